"""Training use cases: train a student from an export, evaluate models, compare a student with
its teacher (background runs for the Train tab: :mod:`depthweb.services.train_runs`).

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from depthweb.config import Settings, get_settings
from depthweb.errors import InputError
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
                  init_from: str | Path | None = None,
                  eval_dirs: Sequence[str | Path] = (), eval_dataset: str | None = None,
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
