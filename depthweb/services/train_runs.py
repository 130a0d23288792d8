"""Background training runs for the web app: one run at a time in a thread, its progress and
stop button, and the admin-only calls of the Train tab (exports to train on, evaluation folders,
start / status / stop). The training itself is :func:`depthweb.services.train.train_student`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from depthweb.config import Settings
from depthweb.errors import DepthwebError, InputError
from depthweb.services import model_queue
from depthweb.services.evaluation import load_samples
from depthweb.services.train import (
    PRESETS,
    RUNS_DIRNAME,
    TrainOutcome,
    build_config,
    check_run_dir,
    train_student,
)
from depthweb.training import registry

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- background runs
@dataclass
class RunState:
    """What the Train tab shows of a background run. ``phase``: starting, training,
    evaluating, finished, stopped or failed."""

    name: str
    run_dir: str
    total_steps: int
    phase: str = "starting"
    step: int = 0
    loss: float | None = None
    elapsed_s: float = 0.0
    message: str = ""
    comparison: dict[str, Any] | None = None

    @property
    def active(self) -> bool:
        return self.phase in ("starting", "training", "evaluating")


class TrainJob:
    """One run in a daemon thread; ``work(job)`` does it, reporting through the job."""

    def __init__(self, state: RunState, work: Callable[[TrainJob], TrainOutcome]) -> None:
        self._state = state
        self._work = work
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"train-{state.name}",
                                        daemon=True)

    def start(self) -> TrainJob:
        self._thread.start()
        return self

    def _update(self, **changes: Any) -> None:
        with self._lock:
            self._state = replace(self._state, **changes)

    def on_progress(self, event) -> bool:
        """The loop's callback: record the step; True asks the loop to stop."""
        self._update(step=event.step, loss=float(event.loss), elapsed_s=event.elapsed_s)
        return self._stop.is_set()

    def set_phase(self, phase: str) -> None:
        self._update(phase=phase)

    def _run(self) -> None:
        try:
            out = self._work(self)
        except DepthwebError as exc:
            self._update(phase="failed", message=str(exc))
            return
        except Exception as exc:  # a thread boundary: report, never die silently
            log.exception("training run %s failed", self._state.name)
            self._update(phase="failed", message=f"The run failed ({type(exc).__name__}); "
                                                 "the details are in the server log.")
            return
        if out.student is None:
            self._update(phase="stopped", message=(
                f"Stopped at step {out.result.steps}; a checkpoint was written: continue with "
                f"`depthweb train --data EXPORT --config CONFIG -o {out.result.run_dir} "
                "--resume`."))
        else:
            self._update(phase="finished", comparison=out.comparison,
                         message=f"Registered as {out.student.name}.")

    def stop(self) -> None:
        self._stop.set()

    def snapshot(self) -> RunState:
        with self._lock:
            return replace(self._state)

    def join(self, timeout: float | None = None) -> RunState:
        self._thread.join(timeout)
        return self.snapshot()


class TrainManager:
    """The process's background run (one at a time: training takes the whole machine)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._job: TrainJob | None = None

    @property
    def job(self) -> TrainJob | None:
        return self._job

    def start(self, state: RunState, work: Callable[[TrainJob], TrainOutcome]) -> TrainJob:
        with self._lock:
            if self._job is not None and self._job.snapshot().active:
                raise InputError(f"The run {self._job.snapshot().name} is still going; wait "
                                 "for it or stop it first.")
            self._job = TrainJob(state, work).start()
            return self._job


# ----------------------------------------------------------------------------- the Train tab
def require_admin(ctx, username: str | None) -> None:
    """Raise :class:`~depthweb.store.PermissionDeniedError` unless ``username`` (as the web
    server authenticated it) is an active admin in the database."""
    from depthweb.services.review.admin import require_admin as _require

    with ctx.session(readonly=True) as s:
        _require(s, username)


def export_names(ctx, username: str | None) -> list[str]:
    """Every export that can be trained on (admins only), newest first: the folders under
    ``<data_dir>/exports`` (by name) and every other export the database knows, made with the
    CLI or the web app (by absolute path), whose folder still holds a manifest."""
    from sqlalchemy import select

    from depthweb.services.review.admin import exports_root
    from depthweb.store.models import Export

    require_admin(ctx, username)
    root = exports_root(ctx).resolve() if exports_root(ctx).exists() else exports_root(ctx)
    # hidden folders are exports being written or left by killed runs: never offered
    found = {p.resolve(): p.stat().st_mtime for p in (root.iterdir() if root.is_dir() else [])
             if not p.name.startswith(".") and (p / "manifest.jsonl").is_file()}
    with ctx.session(readonly=True) as s:
        for path, created in s.execute(select(Export.path, Export.created_at)):
            p = Path(path)
            if p.is_absolute() and not p.name.startswith(".") \
                    and (p / "manifest.jsonl").is_file():
                found.setdefault(p.resolve(), created.timestamp())
    ordered = sorted(found, key=lambda p: found[p], reverse=True)
    return [p.name if p.parent == root else str(p) for p in ordered]


def eval_folders(settings: Settings) -> list[str]:
    """NYU/KITTI-style folders under ``<data_dir>/eval`` (offered for the teacher comparison)."""
    root = Path(settings.data_dir).expanduser() / "eval"
    if not root.is_dir():
        return []
    return sorted(str(p) for p in root.iterdir() if (p / "test_annotations.json").is_file())


def start_web_run(manager: TrainManager, ctx, username: str | None, *, export: str,
                  preset: str, steps: int | None = None, name: str | None = None,
                  eval_dir: str | None = None, init_from: str | None = None) -> RunState:
    """Start a background run on the export ``<data_dir>/exports/<export>`` (admins only);
    its folder is ``<data_dir>/runs/<name>``; the student is registered as ``name``.
    ``init_from``: a registered student whose weights the run fine-tunes (same preset
    architecture), else the run starts from random weights."""
    from depthweb.services.review.admin import exports_root
    from depthweb.services.review.exporter import resolve_out_dir

    require_admin(ctx, username)
    model_queue.refuse_long_job(
        "Training a student", "run `depthweb train` on a machine with a GPU (or this Space on "
        "dedicated GPU hardware) and register the student there")
    settings = ctx.settings
    if not export:
        raise InputError("Choose an export to train on (the Admin tab writes them).")
    if preset not in PRESETS:
        raise InputError(f"Unknown preset {preset!r}; choose one of {', '.join(PRESETS)}.")
    if Path(export).is_absolute():  # an export the database knows (e.g. made with the CLI)
        if export not in export_names(ctx, username):
            raise InputError(f"{export} is not an export the database knows; pick one from "
                             "the list.")
        export_dir = Path(export)
    else:
        export_dir = resolve_out_dir(export, exports_root(ctx))
    name = name or registry.default_name(f"{export_dir.name}-{time.strftime('%Y%m%d-%H%M%S')}")
    registry.check_name(name, settings)
    run_dir = Path(settings.data_dir).expanduser() / RUNS_DIRNAME / name
    if init_from and init_from not in {r.name for r in registry.list_students(settings)}:
        raise InputError(f"No registered student called {init_from!r} to start from.")
    cfg = build_config(export_dir, preset, steps=steps, init_from=init_from or None,
                       settings=settings)  # checks before the thread starts
    check_run_dir(run_dir, resume=False)
    dirs = [eval_dir] if eval_dir else []
    for d in dirs:
        load_samples(d)

    def work(job: TrainJob) -> TrainOutcome:
        return train_student(export_dir, preset, run_dir, name=name, steps=steps,
                             init_from=init_from or None, eval_dirs=dirs,
                             callback=job.on_progress, progress=False,
                             phase=job.set_phase, settings=settings)

    state = RunState(name, str(run_dir), cfg.steps)
    return manager.start(state, work).snapshot()


def web_status(manager: TrainManager, ctx, username: str | None) -> RunState | None:
    """The current (or last) background run's state (admins only)."""
    require_admin(ctx, username)
    return manager.job.snapshot() if manager.job is not None else None


def stop_web_run(manager: TrainManager, ctx, username: str | None) -> RunState | None:
    """Ask the running job to stop after its current step (admins only)."""
    require_admin(ctx, username)
    if manager.job is None or not manager.job.snapshot().active:
        raise InputError("No training run is going.")
    manager.job.stop()
    return manager.job.snapshot()
