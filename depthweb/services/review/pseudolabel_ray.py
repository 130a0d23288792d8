"""Pseudo-labelling on Ray (``depthweb pseudo-label --engine ray``): the same job as
:func:`~depthweb.services.review.pseudolabel.pseudo_label`, spread over a Ray cluster.

A Ray Data pipeline: the driver reads the images still to label from the database (read stage),
CPU tasks decode them (``num_cpus=0.25`` each), a pool of ``workers`` actors each load the
teacher once and run batches (``cpus_per_worker`` CPUs, fractional so that on a 2-CPU machine
the read and decode stages keep running beside two model actors; ``num_gpus_per_worker`` GPUs)
and write each depth file to the shared blob store; the driver commits the prediction and task
rows (:func:`~depthweb.services.review.pseudolabel.commit_labelled`), after the
files exist. Only the driver talks to the database, so SQLite works on one machine; across
machines use PostgreSQL and a shared blob store (a shared path or ``s3://``) reachable under
the same settings from every machine.

Guarantees, as in one process: rows are unique per (image, model, weights) and inserted
idempotently, files are content-addressed, so a batch retried after a killed worker or a lost
actor (Ray Data restarts actors and retries their tasks) adds nothing twice; a killed job is
resumed by running it again. Progress: Ray's progress bars and ``progress(done, total, name)``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from functools import partial
from typing import Any

import numpy as np

from depthweb.config import Settings
from depthweb.errors import InputError
from depthweb.models.loading import resolve_weights
from depthweb.models.registry import get_spec
from depthweb.services.review.context import ReviewContext
from depthweb.services.review.jobs import JobTracker
from depthweb.services.review.pseudolabel import (
    Labelled,
    Labeller,
    Plan,
    ProgressFn,
    PseudoLabelReport,
    Todo,
    check_options,
    commit_labelled,
    decode,
    job_tracker,
    plan_job,
    second_model_name,
    weights_key,
)
from depthweb.store import BlobRef, BlobStore
from depthweb.store.auth import Actor, require_role
from depthweb.store.models import Role
from depthweb.types import Intrinsics, IntrinsicsSource

log = logging.getLogger(__name__)

DECODE_CPUS = 0.25
MAX_BLOCKS = 1000
_CAM = ("fx", "fy", "cx", "cy")


def _ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise InputError("Ray is not installed; install it with `pip install 'depthweb[ray]'` "
                         "(or `pip install \"ray[data]\"`), or leave out --engine ray.") from exc
    return ray


@contextmanager
def ray_session(address: str | None = None) -> Iterator[Any]:
    """A connected Ray: the one this process already joined, the cluster at ``address``
    (``auto``, ``ray://host:10001`` or ``host:6379``), or a local one started now (and shut
    down after)."""
    ray = _ray()
    if ray.is_initialized():
        yield ray
        return
    try:
        ray.init(address=address or None, include_dashboard=False,
                 logging_level=logging.WARNING, log_to_driver=False)
    except ConnectionError as exc:
        raise InputError(f"Cannot reach the Ray cluster at {address!r} ({exc}); start it with "
                         "`ray start --head` or check --address.") from exc
    try:
        yield ray
    finally:
        ray.shutdown()


def _todo_row(todo: Todo) -> dict[str, Any]:
    focal = todo.exif_focal_35mm
    return {"image_id": todo.image_id, "name": todo.name, "sha256": todo.blob.sha256,
            "path": todo.blob.path, "nbytes": todo.blob.nbytes,
            "focal": float("nan") if focal is None else float(focal)}


def _decode_row(row: dict[str, Any], *, store: BlobStore, settings: Settings) -> dict[str, Any]:
    """Ray task: one image decoded (``error`` says why not; ``rgb`` is then 1x1)."""
    focal = float(row["focal"])
    todo = Todo(int(row["image_id"]), str(row["name"]),
                BlobRef(str(row["sha256"]), str(row["path"]), int(row["nbytes"])),
                None if math.isnan(focal) else focal)
    out = {"image_id": todo.image_id, "name": todo.name, "error": ""}
    try:
        rgb, cam = decode(store, settings, todo)
    except InputError as exc:
        return {**out, "error": str(exc), "rgb": np.zeros((1, 1, 3), np.uint8),
                **dict.fromkeys(_CAM, 1.0), "source": "assumed_fov", "note": ""}
    return {**out, "rgb": rgb, "fx": cam.fx, "fy": cam.fy, "cx": cam.cx, "cy": cam.cy,
            "source": str(cam.source), "note": cam.note}


def _as_row(item: Labelled) -> dict[str, Any]:
    ref, cam = item.depth, item.intrinsics
    h, w = ref.shape or (0, 0)
    return {"image_id": item.image_id, "name": item.name, "error": "", "model": item.model,
            "kind": item.kind, "fx": cam.fx, "fy": cam.fy, "cx": cam.cx, "cy": cam.cy,
            "source": str(cam.source), "note": cam.note, "sha256": ref.sha256,
            "path": ref.path, "nbytes": ref.nbytes, "h": h, "w": w, "dtype": ref.dtype or "",
            "score": item.score}


def _labelled(row: dict[str, Any]) -> Labelled:
    cam = Intrinsics(float(row["fx"]), float(row["fy"]), float(row["cx"]), float(row["cy"]),
                     IntrinsicsSource(str(row["source"])), str(row["note"]))
    ref = BlobRef(str(row["sha256"]), str(row["path"]), int(row["nbytes"]),
                  (int(row["h"]), int(row["w"])), str(row["dtype"]))
    return Labelled(int(row["image_id"]), str(row["name"]), str(row["model"]),
                    str(row["kind"]), cam, ref, float(row["score"]))


class LabelActor:
    """Ray actor: loads the teacher once, then labels batches and writes their depth files."""

    def __init__(self, *, store: BlobStore, settings: Settings, model: str,
                 weights: str | None, device: str | None, uncertainty: str,
                 second_weights: str | None) -> None:
        self.store = store
        self.labeller = Labeller(model, weights, settings=settings, device=device,
                                 uncertainty=uncertainty, second_weights=second_weights)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(batch["image_id"])
        ok = [i for i in range(n) if not batch["error"][i]]
        rows: list[dict[str, Any]] = [{}] * n
        if ok:
            rgbs = [np.asarray(batch["rgb"][i]) for i in ok]
            cams = [Intrinsics(*(float(batch[k][i]) for k in _CAM),
                               IntrinsicsSource(str(batch["source"][i])), str(batch["note"][i]))
                    for i in ok]
            for i, (result, score) in zip(ok, self.labeller.predict(rgbs, cams), strict=True):
                todo = Todo(int(batch["image_id"][i]), str(batch["name"][i]),
                            BlobRef("", "", 0), None)
                rows[i] = _as_row(Labeller.store(self.store, todo, result, score))
        blank = {"model": "", "kind": "", "sha256": "", "path": "", "nbytes": 0, "h": 0,
                 "w": 0, "dtype": "", "score": 0.0, "source": "assumed_fov", "note": "",
                 **dict.fromkeys(_CAM, 1.0)}
        for i in range(n):
            if not rows[i]:
                rows[i] = {**blank, "image_id": int(batch["image_id"][i]),
                           "name": str(batch["name"][i]), "error": str(batch["error"][i])}
        return {key: np.asarray([r[key] for r in rows]) for key in rows[0]} if rows else {}


def _weights_label(model: str, weights: str | None, settings: Settings) -> str:
    """The stored weights label, found without loading the model on the driver."""
    spec = get_spec(model, settings)
    return weights_key(resolve_weights(spec, weights, settings=settings).label)


def _build(ray: Any, ctx: ReviewContext, plan: Plan, labeller_kwargs: dict[str, Any], *,
           batch_size: int, workers: int, cpus_per_worker: float, gpus: float) -> Any:
    blocks = max(1, min(MAX_BLOCKS, math.ceil(len(plan.todo) / batch_size)))
    ds = ray.data.from_items([_todo_row(t) for t in plan.todo], override_num_blocks=blocks)
    ds = ds.map(partial(_decode_row, store=ctx.store, settings=ctx.settings),
                num_cpus=DECODE_CPUS)
    return ds.map_batches(
        LabelActor, fn_constructor_kwargs={"store": ctx.store, "settings": ctx.settings,
                                           **labeller_kwargs},
        batch_size=batch_size, batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=workers),
        num_cpus=cpus_per_worker, num_gpus=gpus or None)


def pseudo_label_ray(
    ctx: ReviewContext,
    dataset: str,
    model: str,
    *,
    user: Actor,
    weights: str | None = None,
    batch_size: int = 4,
    device: str | None = None,
    uncertainty: str = "flip",
    second_weights: str | None = None,
    limit: int | None = None,
    progress: ProgressFn | None = None,
    address: str | None = None,
    workers: int = 2,
    num_gpus_per_worker: float = 0.0,
    cpus_per_worker: float = 0.5,
) -> PseudoLabelReport:
    """Label what :func:`~depthweb.services.review.pseudolabel.pseudo_label` would, on Ray
    (see the module docstring); same options, plus ``address`` (None: the Ray this process
    joined, else a local one), ``workers`` model actors with ``num_gpus_per_worker`` GPUs and
    ``cpus_per_worker`` CPUs each. The driver commits each model batch's rows in one
    transaction as soon as the batch arrives."""
    require_role(user, Role.ADMIN)
    check_options(batch_size, uncertainty)
    if workers < 1:
        raise InputError("--workers must be at least 1.")
    if num_gpus_per_worker < 0 or cpus_per_worker <= 0:
        raise InputError("--num-gpus-per-worker must be >= 0 and CPUs per worker > 0.")
    t0 = time.perf_counter()
    second = second_model_name(uncertainty)
    if second is not None:
        get_spec(second, ctx.settings)
    wkey = _weights_label(model, weights, ctx.settings)
    plan = plan_job(ctx, dataset, model, wkey, limit)
    report = PseudoLabelReport(plan.dataset, model, wkey, already_done=plan.already_done)
    job = job_tracker(ctx, plan, model, user, engine="ray", weights=wkey, batch_size=batch_size,
                      uncertainty=uncertainty, limit=limit, workers=workers,
                      num_gpus_per_worker=num_gpus_per_worker or None)
    kwargs = {"model": model, "weights": weights, "device": device,
              "uncertainty": uncertainty, "second_weights": second_weights}
    with ExitStack() as stack:
        # connected first: an unreachable --address leaves no job row
        ray = stack.enter_context(ray_session(address)) if plan.todo else None
        with job:
            job.start(len(plan.todo), f"{plan.already_done} already done")
            done = 0
            if ray is not None:
                ds = _build(ray, ctx, plan, kwargs, batch_size=batch_size, workers=workers,
                            cpus_per_worker=cpus_per_worker, gpus=num_gpus_per_worker)
                done = _commit_stream(ctx, user, plan, report, ds.iter_batches(
                    batch_size=None, batch_format="numpy"), progress, job)
            report.seconds = time.perf_counter() - t0
            job.finish(report.summary(), done=done)
    log.info("pseudo-label (ray) %s", report.summary())
    return report


def _commit_stream(ctx: ReviewContext, user: Actor, plan: Plan, report: PseudoLabelReport,
                   batches: Any, progress: ProgressFn | None, job: JobTracker) -> int:
    """Driver: commit each batch of written predictions (one transaction per batch), then
    update the job's row; returns how many images were handled."""
    done = 0
    for batch in batches:
        rows = [{k: batch[k][i] for k in batch} for i in range(len(batch["image_id"]))]
        good = [_labelled(r) for r in rows if not r["error"]]
        report.failed += [(str(r["name"]), str(r["error"])) for r in rows if r["error"]]
        if good:
            report.labelled += commit_labelled(ctx, user, report.weights, good, plan.relabel)
        report.relabelled += sum(item.image_id in plan.relabel for item in good)
        report.uncertainties += [item.score for item in good]
        for row in rows:
            done += 1
            if progress is not None:
                progress(done, len(plan.todo), str(row["name"]))
        job.progress(done, len(plan.todo))
    return done
