"""Evaluating models on NYU/KITTI-style folders (``depthweb eval``) and comparing a registered
student with its parent teacher (the Train tab, ``depthweb train --eval-data``).

The protocol is :mod:`depthweb.training.evaluate`'s: relative predictions are aligned by
least-squares scale and shift in their own space (disparity for ``relative_disparity``, depth for
``relative_depth``; metric models are not aligned), turned into depth capped at the dataset's
maximum (NYU: Eigen crop, 10 m; KITTI: every LiDAR pixel, 80 m) and scored with AbsRel, RMSE and
delta1..3 (plus sq_rel, rmse_log, log10); a folder's metrics are the means over its frames.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from depthweb.config import Settings
from depthweb.errors import InputError, ModelUnavailableError
from depthweb.training.registry import StudentRecord

TABLE_KEYS = (("abs_rel", "AbsRel"), ("rmse", "RMSE"), ("delta1", "delta1"),
              ("delta2", "delta2"), ("delta3", "delta3"))


def _finite(value: Any) -> Any:
    """JSON-safe: NaN/inf floats become None, recursively."""
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def load_samples(data_dir: str | Path, dataset: str | None = None) -> list:
    """The frames of an NYU/KITTI-style folder (errors as one :class:`InputError`); every frame
    must have at least two valid ground-truth pixels."""
    from PIL import Image

    from depthweb.training.evaldata import load_eval_folder

    root = Path(data_dir).expanduser()

    try:
        samples = load_eval_folder(root, dataset)
    except (OSError, ValueError, KeyError, TypeError, Image.DecompressionBombError) as exc:
        raise InputError(f"{data_dir} is not a readable evaluation folder ({exc}); pass a "
                         "folder laid out like ../shared/data/nyu (rgb/, depth/, "
                         "test_annotations.json).") from exc
    if not samples:
        raise InputError(f"{data_dir} lists no frames in its test_annotations.json.")
    for sample in samples:
        if int(sample.valid.sum()) < 2:
            raise InputError(f"{data_dir}: frame {sample.name} has no valid ground-truth depth "
                             f"(0 = no measurement, at most {sample.max_depth:g} m); check its "
                             "depth file and depth_scale.")
    return samples


def evaluate_backend(backend, data_dir: str | Path, *, dataset: str | None = None,
                     baselines: bool = False, samples: list | None = None) -> dict[str, Any]:
    """Metrics of a loaded backend (anything with ``infer_image(rgb, intrinsics)``) on one
    folder: ``{"dataset", "data", "frames", "max_depth", "kind", "mean", "per_frame"}`` (and
    ``"baselines"`` with the trivial baselines' means)."""
    from depthweb.training.evaldata import PROTOCOLS
    from depthweb.training.evaluate import evaluate_baselines, evaluate_folder

    samples = samples if samples is not None else load_samples(data_dir, dataset)
    kinds: set[str] = set()
    t0 = time.perf_counter()

    def predict(sample):
        res = backend.infer_image(sample.rgb, sample.intrinsics)
        kinds.add(str(res.kind))
        return res.depth, res.kind

    scores = evaluate_folder(samples, predict)
    name = samples[0].dataset
    out = {"dataset": name, "data": str(Path(data_dir).expanduser().resolve()),
           "frames": len(samples), "max_depth": samples[0].max_depth,
           "crop": PROTOCOLS[name]["crop"], "kind": ",".join(sorted(kinds)),
           "seconds": round(time.perf_counter() - t0, 2), "mean": scores["mean"],
           "per_frame": scores["frames"]}
    if baselines:
        out["baselines"] = {k: v["mean"] for k, v in evaluate_baselines(samples).items()}
    return _finite(out)


def evaluate_model(model: str, data_dirs: Sequence[str | Path], *, weights: str | None = None,
                   dataset: str | None = None, device: str | None = None,
                   baselines: bool = False, settings: Settings | None = None) -> dict[str, Any]:
    """``depthweb eval``: the model's metrics on each folder (see :func:`evaluate_backend`)."""
    from depthweb.models.registry import load_backend

    folders = [(d, load_samples(d, dataset)) for d in data_dirs]  # fail before loading a model
    backend = load_backend(model, weights, device=device, settings=settings)
    results = [evaluate_backend(backend, d, baselines=baselines, samples=samples)
               for d, samples in folders]
    return {"model": backend.name, "weights": backend.weights_label,
            "alignment": "least-squares scale and shift in the prediction's space "
                         "(disparity for relative_disparity); metric models unaligned",
            "results": results}


def eval_table(report: dict[str, Any]) -> str:
    """A plain-text table of an :func:`evaluate_model` report (one row per folder/baseline)."""
    head = ["model", "dataset", "frames", *(label for _, label in TABLE_KEYS)]
    rows = []
    for res in report["results"]:
        entries = [(report["model"], res["mean"])]
        entries += [(f"baseline:{k}", v) for k, v in res.get("baselines", {}).items()]
        for label, mean in entries:
            rows.append([label, res["dataset"], str(res["frames"]),
                         *(_fmt(mean.get(k)) for k, _ in TABLE_KEYS)])
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in [head, *rows])


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def compare_with_teacher(student: StudentRecord, data_dirs: Sequence[str | Path], *,
                         dataset: str | None = None, device: str | None = None,
                         settings: Settings | None = None) -> dict[str, Any]:
    """The student's and its parent teacher's metrics on the same folders. The teacher is
    loaded with the weights its pseudo-labels were made with when those are on this machine;
    an unavailable teacher is reported in ``teacher_error``."""
    out: dict[str, Any] = {"student": evaluate_model(student.name, data_dirs, dataset=dataset,
                                                     device=device, settings=settings),
                           "teacher": None, "teacher_model": student.teacher,
                           "teacher_error": None}
    if not student.teacher:
        out["teacher_error"] = "the training data named no teacher"
        return out
    weights = student.meta.get("parent_teacher_weights") or None
    if weights and not Path(weights).exists():
        weights = None  # a hub label or a folder gone since: the model's own resolution
    try:
        out["teacher"] = evaluate_model(student.teacher, data_dirs, weights=weights,
                                        dataset=dataset, device=device, settings=settings)
    except ModelUnavailableError as exc:
        out["teacher_error"] = str(exc)
    return out


def comparison_rows(comparison: dict[str, Any] | None) -> list[list]:
    """Rows ``[role, model, dataset, frames, AbsRel, RMSE, delta1, delta2, delta3]``."""
    rows: list[list] = []
    for role in ("student", "teacher"):
        report = (comparison or {}).get(role)
        for res in (report or {}).get("results", []):
            rows.append([role, report["model"], res["dataset"], res["frames"],
                         *(_round(res["mean"].get(k)) for k, _ in TABLE_KEYS)])
    return rows


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)


def comparison_summary(comparison: dict[str, Any]) -> dict[str, Any]:
    """What ``meta.json`` keeps of a comparison: mean metrics per role and dataset."""
    def means(report):
        return {r["dataset"]: r["mean"] for r in report["results"]} if report else None

    return {"data": [r["data"] for r in comparison["student"]["results"]],
            "student": means(comparison["student"]), "teacher": means(comparison["teacher"]),
            "teacher_model": comparison["teacher_model"],
            "teacher_error": comparison["teacher_error"]}
