"""The loop experiment's stages (see :mod:`bench.bench_loop` for what it measures and why).

Everything lives in one work folder: ``data/`` (the SQLite database, the blob store, exports,
registered students), ``images/`` (rendered photos, imported like a user's), ``runs/``.
Domain A: indoor rooms (the teacher's only training data); domain B: outdoor streets (the
"unlabeled" images; their exact depth is kept aside in memory as ground truth).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any

import numpy as np

from bench.loop_reviewers import MAX_DEPTH, Reviewer
from depthweb.errors import InputError

TEACHER = "loop-teacher-rooms"
DATASET = "streets"
GT_DATASET = "streets-truth"
ANCHOR_DATASET = "streets-anchors"
ADMIN = "loop-admin"
HELDOUT = "streets-heldout"


@dataclass(frozen=True)
class Sizes:
    """How big the experiment is (the full run and the CI ``--quick`` form)."""

    height: int
    width: int
    widths: tuple[int, ...]
    teacher_scenes: int
    teacher_steps: int
    pool: int          # unlabeled B images
    heldout: int       # held-out B images with exact depth (evaluation only)
    steps: int         # fine-tuning steps of every student
    curve: tuple[int, ...]  # numbers of reviewed images (the last = the whole pool)
    seeds: tuple[int, ...]
    batch: int
    lr: float
    reviewers: int
    anchors: int       # images of the separate anchor readout


FULL = Sizes(96, 128, (16, 24, 32, 48, 64), teacher_scenes=400, teacher_steps=800, pool=200,
             heldout=40, steps=300, curve=(0, 25, 50, 100, 200), seeds=(0, 1, 2), batch=8,
             lr=1e-3, reviewers=2, anchors=10)
QUICK = Sizes(64, 96, (8, 12, 16), teacher_scenes=12, teacher_steps=12, pool=8, heldout=4,
              steps=6, curve=(0, 4, 8), seeds=(0, 1), batch=4, lr=2e-3, reviewers=2,
              anchors=2)


@dataclass
class Frames:
    """Rendered photos written as PNG files, with their exact depth (inf = sky) by stem."""

    paths: list[Path]
    depth: dict[str, np.ndarray]
    rgb: dict[str, np.ndarray] = field(default_factory=dict)
    intrinsics: dict[str, Any] = field(default_factory=dict)


def render_frames(folder: Path, prefix: str, seed: int, n: int, sizes: Sizes) -> Frames:
    from PIL import Image

    from depthweb.training.synthetic import render_scene

    folder.mkdir(parents=True, exist_ok=True)
    out = Frames([], {})
    for i in range(n):
        f = render_scene([seed, i], sizes.height, sizes.width, outdoor=True)
        stem = f"{prefix}_{i:04d}"
        path = folder / f"{stem}.png"
        Image.fromarray(f.rgb).save(path)
        out.paths.append(path)
        out.depth[stem], out.rgb[stem], out.intrinsics[stem] = f.depth, f.rgb, f.intrinsics
    return out


def eval_samples(frames: Frames) -> list:
    """Held-out frames as evaluation samples (KITTI-style protocol: every pixel with a finite
    depth up to 80 m; sky is not scored)."""
    from depthweb.training.evaldata import EvalSample

    samples = []
    for stem, depth in frames.depth.items():
        valid = np.isfinite(depth) & (depth > 0) & (depth <= MAX_DEPTH)
        samples.append(EvalSample(stem, frames.rgb[stem], np.where(valid, depth, 0.0).astype(
            np.float32), valid, frames.intrinsics[stem], "kitti", MAX_DEPTH))
    return samples


def model_config(sizes: Sizes, seed: int, steps: int, lr: float, warmup: int,
                 data: list | None = None) -> dict[str, Any]:
    cfg = {"model": {"arch": "compact", "widths": list(sizes.widths),
                     "input_size": sizes.height},
           "image_size": [sizes.height, sizes.width], "batch_size": sizes.batch,
           "steps": steps, "lr": lr, "warmup_steps": warmup, "seed": seed,
           "checkpoint_every": steps, "keep_checkpoints": 1, "log_every": 10,
           "device": "cpu", "threads": 1}
    if data is not None:
        cfg["data"] = data
    return cfg


def train_teacher(settings, work: Path, sizes: Sizes) -> str:
    """The teacher: a student trained from scratch on rendered indoor rooms only."""
    from depthweb.training import registry
    from depthweb.training.config import config_from_dict
    from depthweb.training.loop import train

    data = [{"type": "synthetic", "count": sizes.teacher_scenes, "seed": 7,
             "outdoor_fraction": 0.0, "augment": True}]
    cfg = config_from_dict(model_config(sizes, 0, sizes.teacher_steps, 3e-3,
                                        min(50, sizes.teacher_steps // 10), data))
    run_dir = work / "runs" / TEACHER
    train(cfg, run_dir, progress=False)
    registry.register_student(run_dir, name=TEACHER, settings=settings)
    return TEACHER


def open_store(settings, reviewers: int):
    """The database (created), an admin and ``reviewers`` reviewer accounts."""
    from argon2 import PasswordHasher

    from depthweb.services.review import ReviewContext
    from depthweb.store import SYSTEM, create_user

    fast = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    ctx = ReviewContext.from_settings(settings, create=True)
    names = [f"loop-rev{i + 1}" for i in range(reviewers)]
    with ctx.session() as s:
        create_user(session=s, actor=SYSTEM, name=ADMIN, password="loop-admin-pw-123",
                    role="admin", hasher=fast)
        for name in names:
            create_user(session=s, actor=SYSTEM, name=name, password="loop-review-pw-123",
                        role="reviewer", hasher=fast)
    return ctx, names


def import_and_label(ctx, frames: Frames, dataset: str, teacher: str) -> dict[str, Any]:
    """What the Admin tab does: import the photos, pseudo-label them with the teacher."""
    from depthweb.services.review.admin import run_import, run_pseudo_label

    imported = run_import(ctx, ADMIN, frames.paths, dataset)
    labelled = run_pseudo_label(ctx, ADMIN, dataset, teacher, batch_size=8, uncertainty="flip")
    return {"imported": imported.added, "labelled": labelled.labelled,
            "failed": len(labelled.failed) + len(imported.failed)}


def import_truth(ctx, frames: Frames, work: Path) -> None:
    """The ceiling's labels: the same photos with their exact depth imported as ground truth
    (``depthweb import-depth``; sky has no finite depth and is stored as no measurement)."""
    from depthweb.services.review.admin import run_import
    from depthweb.services.review.groundtruth import import_ground_truth
    from depthweb.store import SYSTEM

    run_import(ctx, ADMIN, frames.paths, GT_DATASET)
    folder = work / "truth"
    folder.mkdir(exist_ok=True)
    for stem, depth in frames.depth.items():
        np.save(folder / f"{stem}.npy", np.where(np.isfinite(depth), depth, np.nan)
                .astype(np.float32))
    report = import_ground_truth(ctx, folder, dataset=GT_DATASET, user=SYSTEM)
    if report.failed:
        raise RuntimeError(f"ground truth import failed: {report.failed[:3]}")


def export(ctx, dataset: str, name: str) -> Path:
    """``depthweb export --dataset D -o DIR --val-fraction 0`` (every row trains)."""
    from depthweb.services.review import export_dataset
    from depthweb.services.review.admin import exports_root
    from depthweb.store import SYSTEM

    report = export_dataset(ctx, dataset, name, user=SYSTEM, base_dir=exports_root(ctx),
                            val_fraction=0.0)
    return Path(report.path)


def review_until(reviewers: list[Reviewer], n: int, done: int) -> int:
    """Reviewers take turns on the queue until ``n`` images are decided; returns the count."""
    while done < n:
        if not reviewers[done % len(reviewers)].review_next():
            break
        done += 1
    return done


def fine_tune(settings, work: Path, sizes: Sizes, export_dir: Path, name: str, seed: int,
              teacher_dir: Path) -> dict[str, Any]:
    """Train a student on an export, starting from the teacher's weights; register it."""
    from depthweb.services.train import train_student

    cfg = model_config(sizes, seed, sizes.steps, sizes.lr, max(1, sizes.steps // 20))
    run_dir = work / "runs" / name
    t0 = time.perf_counter()
    out = train_student(export_dir, cfg, run_dir, name=name, init_from=teacher_dir,
                        progress=False, settings=settings)
    return {"name": name, "seconds": round(time.perf_counter() - t0, 1),
            "final_loss": out.result.last_loss, "data_version": out.student.data_version}


def evaluate(settings, name: str, samples: list) -> dict[str, float]:
    """Mean AbsRel and delta1 of a registered model on the samples (the project's protocol)."""
    from depthweb.models.registry import load_backend
    from depthweb.services.evaluation import evaluate_backend

    backend = load_backend(name, device="cpu", settings=settings)
    res = evaluate_backend(backend, "held-out", samples=samples)
    return {"abs_rel": float(res["mean"]["abs_rel"]), "delta1": float(res["mean"]["delta1"])}


def revision_counts(ctx, dataset: str) -> dict[str, int]:
    """Revisions stored for the dataset's tasks, by action (read from the database)."""
    from sqlalchemy import func, select

    from depthweb.store.models import Dataset, Image, Revision, Task

    with ctx.session(readonly=True) as s:
        rows = s.execute(select(Revision.action, func.count(Revision.id))
                         .join(Task, Revision.task_id == Task.id)
                         .join(Image, Task.image_id == Image.id)
                         .join(Dataset, Image.dataset_id == Dataset.id)
                         .where(Dataset.name == dataset).group_by(Revision.action)).all()
    return {str(a.value if hasattr(a, "value") else a): int(c) for a, c in rows}


def anchor_readout(ctx, frames: Frames, teacher: str, reviewer: str) -> dict[str, Any]:
    """Scale anchors, apart: a reviewer gives two true depths per label (the nearest and the
    farthest non-sky pixel); the label becomes metric. Reported: its AbsRel as metres, with
    no alignment, next to the same label's AbsRel after the oracle scale and shift (what the
    scale-and-shift-invariant loss sees either way)."""
    from depthweb.services.review import session as review
    from depthweb.services.review.labels import current_label
    from depthweb.training.evaluate import evaluate_prediction

    import_and_label(ctx, frames, ANCHOR_DATASET, teacher)
    samples = {s.name: s for s in eval_samples(frames)}
    metric, aligned, refused = [], [], 0
    while (page := review.next_outcome(ctx, reviewer, dataset=ANCHOR_DATASET).page):
        stem = PurePath(page.image_name).stem
        depth = frames.depth[stem]
        ok = np.isfinite(depth) & (depth <= MAX_DEPTH)
        values = np.sort(depth[ok])
        rows = []
        for q in (0.1, 0.5, 0.9):  # three measured points: near, middle, far
            target = values[int(q * (len(values) - 1))]
            y, x = np.unravel_index(np.argmin(np.where(ok, np.abs(depth - target), np.inf)),
                                    depth.shape)
            rows.append([int(x), int(y), float(depth[y, x])])
        try:
            version = review.save_anchors(ctx, reviewer, page.task_id, page.version, rows)
        except InputError:  # the service refuses a fit that is not metric: said, not hidden
            refused += 1
            review.reject(ctx, reviewer, page.task_id, page.version, ["wrong scale"])
            continue
        review.approve(ctx, reviewer, page.task_id, version)
        with ctx.session(readonly=True) as s:
            label = current_label(s, page.task_id, store=ctx.store)
        metric.append(evaluate_prediction(label.depth, label.kind, samples[stem])["abs_rel"])
        disp = np.where(label.depth > 0, 1.0 / np.maximum(label.depth, 1e-6), np.nan)
        aligned.append(evaluate_prediction(disp, "relative_disparity", samples[stem])["abs_rel"])
    nan = float("nan")
    return {"images": len(metric), "refused": refused,
            "metric_abs_rel": float(np.mean(metric)) if metric else nan,
            "aligned_abs_rel": float(np.mean(aligned)) if aligned else nan}


def spread(values: list[float]) -> dict[str, float]:
    arr = np.asarray(values, float)
    return {"mean": float(arr.mean()), "min": float(arr.min()), "max": float(arr.max()),
            "std": float(arr.std(ddof=1)) if len(arr) > 1 else 0.0}


def write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, default=float) + "\n")
