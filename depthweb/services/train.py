"""Training use cases: train a student from an export, evaluate models, compare a student with
its teacher, and run all of it in a background thread for the Train tab.

:func:`train_student` is the one path (CLI and web): config (a YAML/JSON file, a preset name or
a dict) + export directory -> :func:`depthweb.training.loop.train` -> the student registered
under ``<data_dir>/students/<name>`` (:mod:`depthweb.training.registry`) -> optionally evaluated
next to its teacher on NYU/KITTI-style folders, the metrics stored in its ``meta.json``.

Evaluation lives in :mod:`depthweb.services.evaluation`.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from depthweb.config import Settings, get_settings
from depthweb.errors import DepthwebError, InputError
from depthweb.services import model_queue
from depthweb.services.evaluation import compare_with_teacher, comparison_summary, load_samples
from depthweb.training import registry
from depthweb.training.registry import StudentRecord

if TYPE_CHECKING:
    from depthweb.training.loop import TrainResult

log = logging.getLogger(__name__)

PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"model": {"arch": "compact", "widths": [8, 12, 16], "input_size": 64},
             "image_size": [64, 96], "batch_size": 4, "steps": 20, "lr": 0.005,
             "warmup_steps": 0, "checkpoint_every": 10},
    "small": {"model": {"arch": "compact", "widths": [16, 24, 32, 48, 64, 96],
                        "input_size": 128},
              "image_size": [128, 192], "batch_size": 8, "steps": 500, "lr": 0.002,
              "warmup_steps": 50, "ema_decay": 0.99, "checkpoint_every": 100},
    "standard": {"model": {"arch": "compact", "widths": [24, 32, 48, 64, 96, 128],
                           "input_size": 192},
                 "image_size": [160, 256], "batch_size": 8, "steps": 2000, "lr": 0.001,
                 "warmup_steps": 100, "ema_decay": 0.998, "checkpoint_every": 200},
}
"""Training presets (compact students): ``tiny`` is a smoke test, ``small`` a quick student,
``standard`` the default student size. Any :class:`TrainConfig` key may be given in a file."""
RUNS_DIRNAME = "runs"
Phase = Callable[[str], None]


# ----------------------------------------------------------------------------- configuration
def _read_mapping(path: Path) -> dict[str, Any]:
    text = path.read_text()
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            detail = " ".join(str(exc).split())
            raise InputError(f"Training config {path} is unreadable ({detail}).") from exc
    else:
        data = json.loads(text)
    if not isinstance(data, dict):
        raise InputError(f"{path} does not hold a mapping of training settings.")
    return data


def build_config(export_dir: str | Path, config: str | Path | dict | None, *,
                 steps: int | None = None, device: str | None = None,
                 init_from: str | Path | None = None, settings: Settings | None = None):
    """The :class:`~depthweb.training.config.TrainConfig` of a run on ``export_dir``.

    ``config``: a ``.yaml``/``.json`` file, a preset name (:data:`PRESETS`), a dict, or None
    (``small``). The export becomes the run's export source (replacing any in the config;
    synthetic sources are kept). ``steps`` / ``device`` override the config's. ``init_from``:
    a registered student's name or a saved student folder whose weights the run fine-tunes
    (same architecture; e.g. the current teacher, when it is a student).
    """
    from depthweb.training.config import config_from_dict
    from depthweb.training.student import check_init_from

    export = Path(export_dir).expanduser().resolve()
    if not (export / "manifest.jsonl").is_file():
        raise InputError(f"{export} is not a training-set export (no manifest.jsonl); write one "
                         "with `depthweb export --dataset NAME -o DIR`.")
    if isinstance(config, dict):
        data = json.loads(json.dumps(config))
    elif config is None or str(config) in PRESETS:
        data = json.loads(json.dumps(PRESETS[str(config or "small")]))
    else:
        path = Path(config).expanduser()
        if not path.is_file():
            raise InputError(f"Training config {config} not found; pass a .yaml/.json file or "
                             f"a preset ({', '.join(PRESETS)}).")
        try:
            data = _read_mapping(path)
        except (ValueError, OSError) as exc:  # json errors are ValueErrors
            raise InputError(f"Training config {path} is unreadable ({exc}).") from exc
    others = [s for s in data.get("data") or []
              if not (isinstance(s, dict) and s.get("type") == "export")]
    data["data"] = [{"type": "export", "path": str(export), "split": "train"}, *others]
    if steps:
        data["steps"] = int(steps)
    if device:
        data["device"] = device
    if init_from:
        data["init_from"] = str(_student_folder(init_from, settings))
    try:
        cfg = config_from_dict(data)
        if cfg.init_from:
            check_init_from(cfg.init_from, cfg.model)
        return cfg
    except (TypeError, ValueError) as exc:
        raise InputError(f"The training config is invalid: {exc}.") from exc


def _student_folder(init_from: str | Path, settings: Settings | None) -> Path:
    """A saved student folder, given as a folder or as a registered student's name."""
    path = Path(init_from).expanduser()
    if path.is_dir():
        return path.resolve()
    if isinstance(init_from, str) and "/" not in init_from and "\\" not in init_from:
        return registry.get_student(init_from, settings or get_settings()).path
    raise InputError(f"init_from {init_from} is neither a student folder nor a registered "
                     "student's name.")


def check_run_dir(run_dir: Path, resume: bool) -> None:
    """Refuse to overwrite a run unless resuming; refuse to resume nothing."""
    from depthweb.training.checkpoint import list_checkpoints

    has_run = bool(list_checkpoints(run_dir)) or (run_dir / "student").exists()
    if has_run and not resume:
        raise InputError(f"{run_dir} already holds a training run; pass --resume to continue "
                         "it or choose a new output folder.")
    if resume and not list_checkpoints(run_dir):
        raise InputError(f"{run_dir} has no checkpoint to resume from; drop --resume to start.")


# ----------------------------------------------------------------------------- training
@dataclass
class TrainOutcome:
    """A finished (or stopped) run: the loop's result, the registered student (None when the
    run stopped early, and on every process but rank 0 under ``torchrun``) and the teacher
    comparison (None without eval folders)."""

    result: TrainResult
    student: StudentRecord | None
    comparison: dict[str, Any] | None


def train_student(export_dir: str | Path, config: str | Path | dict | None,
                  run_dir: str | Path, *, name: str | None = None, resume: bool = False,
                  steps: int | None = None, device: str | None = None,
                  init_from: str | Path | None = None, eval_dirs: Sequence[str | Path] = (), eval_dataset: str | None = None,
                  callback=None, progress: bool = True, phase: Phase | None = None,
                  settings: Settings | None = None) -> TrainOutcome:
    """Train on ``export_dir``, register the student as ``name``, compare it with its teacher
    on ``eval_dirs``. Name, config and folders are checked before training starts."""
    from depthweb.training.loop import train

    settings = settings or get_settings()
    run_dir = Path(run_dir).expanduser().resolve()
    name = name or registry.default_name(run_dir)
    record = registry.registered_from(name, run_dir, settings) if resume else None
    if record is None:
        registry.check_name(name, settings)
    cfg = build_config(export_dir, config, steps=steps, device=device, init_from=init_from,
                       settings=settings)
    check_run_dir(run_dir, resume)
    for d in eval_dirs:
        load_samples(d, eval_dataset)  # fail before hours of training, not after
    if record is not None:  # killed after registering: the run is done, register it once
        log.info("%s was already registered from %s", name, run_dir)
        result = _registered_result(record, run_dir)
    else:
        (phase or _quiet)("training")
        try:
            result = train(cfg, run_dir, callback=callback, resume=resume, progress=progress)
        except ValueError as exc:  # e.g. an export with no usable rows
            raise InputError(f"Training could not run: {exc}.") from exc
        if result.stopped_early or result.student_dir is None:  # stopped, or not rank 0 (DDP)
            return TrainOutcome(result, None, None)
        record = registry.register_student(run_dir, name=name, settings=settings)
    comparison = None
    if eval_dirs:
        (phase or _quiet)("evaluating")
        comparison = compare_with_teacher(record, eval_dirs, dataset=eval_dataset,
                                          device=device, settings=settings)
        record = registry.record_metrics(name, "eval", comparison_summary(comparison), settings)
    return TrainOutcome(result, record, comparison)


def _registered_result(record: StudentRecord, run_dir: Path) -> TrainResult:
    """The loop's result of a finished run, from its registered student's metrics."""
    from depthweb.training.loop import TrainResult

    done = record.meta.get("metrics", {}).get("train", {})
    loss = done.get("final_loss")
    return TrainResult(run_dir, run_dir / "student", int(done.get("steps") or 0),
                       float(loss) if loss is not None else math.nan,
                       float(done.get("elapsed_s") or 0.0), False)


def _quiet(_phase: str) -> None:
    return None


def loss_curve(run_dir: str | Path, smoothing: float = 0.9) -> list[dict[str, Any]]:
    """Long-format rows ``{"step", "loss", "series"}`` of the run's ``metrics.jsonl``: the raw
    loss and its exponential moving average (``smoothing``), for a line plot."""
    from depthweb.training.loop import read_metrics

    rows, avg = [], None
    for m in read_metrics(run_dir):
        loss = m.get("loss")
        if loss is None or not math.isfinite(loss):
            continue
        avg = loss if avg is None else smoothing * avg + (1 - smoothing) * loss
        rows.append({"step": m["step"], "loss": loss, "series": "loss"})
        rows.append({"step": m["step"], "loss": avg, "series": "smoothed"})
    return rows


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
                  eval_dir: str | None = None) -> RunState:
    """Start a background run on the export ``<data_dir>/exports/<export>`` (admins only);
    its folder is ``<data_dir>/runs/<name>``; the student is registered as ``name``."""
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
    cfg = build_config(export_dir, preset, steps=steps)  # checks before the thread starts
    check_run_dir(run_dir, resume=False)
    dirs = [eval_dir] if eval_dir else []
    for d in dirs:
        load_samples(d)

    def work(job: TrainJob) -> TrainOutcome:
        return train_student(export_dir, preset, run_dir, name=name, steps=steps,
                             eval_dirs=dirs, callback=job.on_progress, progress=False,
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
