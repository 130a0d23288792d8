"""The pseudo-labelling job: a teacher model predicts depth for every image of a dataset.

Resumable and idempotent: the job asks the database which images have no prediction from
(model, weights) yet, or one whose depth file is missing from the blob store, and only runs
those. Per model batch, in this order: each depth blob is written (atomically) to the blob
store, then the batch's prediction and review-task rows are committed in one transaction. A
job killed at any point leaves at worst blob files without rows; re-running predicts those
images again (same model, same input: the same bytes, so the same content-addressed file, which
now gets its row) and never adds a second prediction (rows are unique per image, model and
weights). An image whose prediction file went missing is predicted again: its file is written
anew (and the prediction points to the new file if the bytes differ).

This module runs in one process, pipelined (:mod:`.pseudolabel_pipeline`: decoding and writes
overlap the model); :mod:`.pseudolabel_ray` runs the same pieces on a Ray cluster.

Uncertainty orders the review queue (task priority, highest first). ``flip``: the teacher is
also run on the mirrored image; ``second-model:<name>``: a second model is run. The other
prediction is brought into the teacher's space (depth or inverse depth), aligned to the
teacher's by least-squares scale and shift (:func:`depthweb.geometry.align.fit_scale_shift`),
and the score is ``mean |aligned - teacher| / mean |teacher|`` over pixels valid in both (0 =
full agreement; 1.0 when the fit is impossible, e.g. a constant map).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from depthweb.config import Settings
from depthweb.errors import InputError
from depthweb.geometry.align import fit_scale_shift
from depthweb.geometry.backproject import depth_to_disparity, disparity_to_depth
from depthweb.geometry.intrinsics import resolve_intrinsics
from depthweb.imaging import load_image
from depthweb.models.base import DepthBackend
from depthweb.models.registry import load_backend
from depthweb.services.review.context import ReviewContext
from depthweb.services.review.jobs import JobTracker
from depthweb.services.review.previews import warm_photo, warm_teacher, with_photo_preview
from depthweb.services.review.pseudolabel_pipeline import Pipeline
from depthweb.store import BlobRef, BlobStore
from depthweb.store.auth import Actor, require_role
from depthweb.store.models import Blob, Image, JobKind, Prediction, Role
from depthweb.store.repo import add_prediction, ensure_task, images_without_prediction
from depthweb.store.repo import require_dataset as _require_dataset
from depthweb.types import DepthKind, DepthResult, Intrinsics

log = logging.getLogger(__name__)

SECOND_MODEL_PREFIX = "second-model:"
WEIGHTS_KEY_MAX = 128
ProgressFn = Callable[[int, int, str], None]
"""``progress(done, total, image name)`` after each image."""


@dataclass
class PseudoLabelReport:
    """``labelled``: new predictions; ``already_done``: images that had one before this run."""

    dataset: str
    model: str
    weights: str
    labelled: int = 0
    already_done: int = 0
    relabelled: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    uncertainties: list[float] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        mean = f", mean uncertainty {np.mean(self.uncertainties):.4f}" if self.uncertainties else ""
        again = (f", {self.relabelled} labelled again (prediction file missing)"
                 if self.relabelled else "")
        return (f"{self.dataset}: {self.labelled} labelled by {self.model}, {self.already_done} "
                f"already done{again}, {len(self.failed)} failed in {self.seconds:.1f} s{mean}")


def weights_key(label: str) -> str:
    """The weights label as stored (at most 128 characters; long paths get a hash suffix)."""
    if len(label) <= WEIGHTS_KEY_MAX:
        return label
    digest = hashlib.sha256(label.encode()).hexdigest()[:12]
    return f"{label[:60]}...{label[-40:]}#{digest}"


def to_space(depth: np.ndarray, kind: DepthKind, target: DepthKind) -> np.ndarray:
    """``depth`` (H, W) of ``kind`` in ``target``'s space (inverse depth or depth)."""
    src_disp = kind is DepthKind.RELATIVE_DISPARITY
    dst_disp = target is DepthKind.RELATIVE_DISPARITY
    if src_disp == dst_disp:
        return depth
    return depth_to_disparity(depth) if dst_disp else disparity_to_depth(depth)


def disagreement(
    teacher: np.ndarray, kind: DepthKind, other: np.ndarray, other_kind: DepthKind
) -> float:
    """``mean |a - t| / mean |t|`` with ``a`` = ``other`` in the teacher's space, scale-shift
    aligned to ``teacher`` (both (H, W)); 1.0 when no alignment is possible."""
    other = to_space(np.asarray(other, np.float64), DepthKind(other_kind), DepthKind(kind))
    teacher = np.asarray(teacher, np.float64)
    valid = np.isfinite(teacher) & np.isfinite(other)
    try:
        scale, shift = fit_scale_shift(other, teacher, valid)
    except ValueError:
        return 1.0
    t = teacher[valid]
    denom = float(np.mean(np.abs(t)))
    if not denom > 0:
        return 1.0
    return float(np.mean(np.abs(scale * other[valid] + shift - t)) / denom)


def _masked(result: DepthResult) -> np.ndarray:
    return np.where(result.valid_mask, result.depth, np.nan).astype(np.float32)


def _mirror(intr: Intrinsics, width: int) -> Intrinsics:
    return replace(intr, cx=(width - 1) - intr.cx)


def second_model_name(mode: str) -> str | None:
    """The second model of ``second-model:NAME`` (None for ``flip``/``none``); raises
    :class:`InputError` for anything else."""
    if mode.startswith(SECOND_MODEL_PREFIX):
        name = mode[len(SECOND_MODEL_PREFIX):].strip()
        if not name:
            raise InputError("Name the second model: --uncertainty second-model:NAME.")
        return name
    if mode not in ("flip", "none"):
        raise InputError(f"Unknown uncertainty {mode!r}; use flip, none or second-model:NAME.")
    return None


class Uncertainty:
    """Scores for a batch of teacher results (see the module docstring)."""

    def __init__(
        self, mode: str, teacher: DepthBackend, load_second: Callable[[str], DepthBackend]
    ) -> None:
        self.mode = mode
        self.teacher = teacher
        self.second: DepthBackend | None = None
        name = second_model_name(mode)
        if name is not None:
            self.second = load_second(name)

    def scores(
        self, rgbs: Sequence[np.ndarray], intr: Sequence[Intrinsics], results: list[DepthResult]
    ) -> list[float]:
        if self.mode == "none":
            return [0.0] * len(results)
        if self.second is not None:
            others = self.second.infer_batch(list(rgbs), list(intr))
            return [disagreement(_masked(r), r.kind, _masked(o), o.kind)
                    for r, o in zip(results, others, strict=True)]
        flipped = [np.ascontiguousarray(im[:, ::-1]) for im in rgbs]
        cams = [_mirror(c, im.shape[1]) for c, im in zip(intr, rgbs, strict=True)]
        others = self.teacher.infer_batch(flipped, cams)
        return [disagreement(_masked(r), r.kind, _masked(o)[:, ::-1], o.kind)
                for r, o in zip(results, others, strict=True)]


@dataclass(frozen=True)
class Todo:
    """What the job needs of an image (read while the session is open)."""

    image_id: int
    name: str
    blob: BlobRef
    exif_focal_35mm: float | None

    @classmethod
    def of(cls, image: Image) -> Todo:
        return cls(image.id, image.original_filename or f"image {image.id}",
                   BlobRef.from_row(image.blob), image.exif_focal_35mm)


def decode(store: BlobStore, settings: Settings, todo: Todo) -> tuple[np.ndarray, Intrinsics]:
    """The image's RGB (H, W, 3) uint8 and the intrinsics the teacher is given (EXIF focal or
    the assumed FOV); :class:`InputError` when the stored file is not a usable image."""
    try:
        data = store.get_bytes(todo.blob)
    except FileNotFoundError as exc:
        raise InputError(f"{todo.name}: its image file is missing from the blob store.") from exc
    loaded = load_image(data, max_pixels=settings.max_pixels, name=todo.name)
    cam = resolve_intrinsics(loaded.width, loaded.height, exif_focal_35mm=todo.exif_focal_35mm,
                             default_fov_deg=settings.default_fov_deg)
    return loaded.rgb, cam


@dataclass(frozen=True)
class Labelled:
    """One stored teacher prediction awaiting its rows: the depth (H, W) float32 blob (NaN
    where invalid) is already in the blob store."""

    image_id: int
    name: str
    model: str
    kind: str
    intrinsics: Intrinsics
    depth: BlobRef
    score: float


class Labeller:
    """The teacher (and the uncertainty's second model), loaded once; :meth:`label` runs a
    batch and writes its depth files."""

    def __init__(self, model: str, weights: str | None, *, settings: Settings,
                 device: str | None = None, uncertainty: str = "flip",
                 second_weights: str | None = None) -> None:
        self.teacher = load_backend(model, weights, device=device, settings=settings)
        self.scorer = Uncertainty(uncertainty, self.teacher, lambda name: load_backend(
            name, second_weights, device=device, settings=settings))
        self.weights = weights_key(self.teacher.weights_label)

    def predict(self, rgbs: list[np.ndarray], cams: list[Intrinsics]
                ) -> list[tuple[DepthResult, float]]:
        """Teacher results and uncertainty scores, one per image."""
        results = self.teacher.infer_batch(rgbs, cams)
        return list(zip(results, self.scorer.scores(rgbs, cams, results), strict=True))

    @staticmethod
    def store(store: BlobStore, todo: Todo, result: DepthResult, score: float) -> Labelled:
        """Write the depth file (before any row points to it)."""
        ref = store.put_array(_masked(result))
        return Labelled(todo.image_id, todo.name, result.model, DepthKind(result.kind).value,
                        result.intrinsics, ref, float(score))


@dataclass
class Plan:
    """The images a run labels (``todo``, by id) and what is already done."""

    dataset: str
    todo: list[Todo]
    already_done: int
    relabel: frozenset[int]  # image ids whose prediction exists but whose file is missing


def plan_job(ctx: ReviewContext, dataset: str, model: str, weights: str,
             limit: int | None = None) -> Plan:
    """Images of ``dataset`` without a prediction from (model, weights), then those whose
    prediction file is missing from the blob store; ``limit`` caps the list."""
    with ctx.session(readonly=True) as s:
        ds = _require_dataset(s, dataset)
        todo = [Todo.of(im) for im in
                images_without_prediction(s, dataset_id=ds.id, model=model, weights=weights)]
        stored = s.execute(
            select(Image, Blob.path).join(Prediction, Prediction.image_id == Image.id)
            .join(Blob, Blob.sha256 == Prediction.depth_blob_sha256)
            .where(Image.dataset_id == ds.id, Prediction.model == model,
                   Prediction.weights == weights).order_by(Image.id)).all()
        present = ctx.store.existing(path for _, path in stored)
        again = [Todo.of(im) for im, path in stored if path not in present]
        n_images = int(s.scalar(select(func.count(Image.id)).where(Image.dataset_id == ds.id)))
        name = ds.name
    if again:
        log.warning("%d prediction file(s) of %s are missing; labelling them again",
                    len(again), name)
    todo += again
    done = n_images - len(todo)
    return Plan(name, todo[:limit] if limit is not None else todo, done,
                frozenset(t.image_id for t in again))


def commit_labelled(ctx: ReviewContext, user: Actor, weights: str, batch: Sequence[Labelled],
                    relabel: frozenset[int] = frozenset()) -> int:
    """Prediction + task rows of a batch whose files are written, in one transaction; returns
    how many predictions are new. An image in ``relabel`` gets its prediction pointed to the
    new file when the bytes differ from the lost one."""
    created_n = 0
    with ctx.session() as s:
        for item in batch:
            pred, created = add_prediction(
                session=s, user=user, image_id=item.image_id, model=item.model,
                weights=weights, kind=item.kind, intrinsics=item.intrinsics, depth=item.depth,
                store=ctx.store, uncertainty=item.score)
            if (not created and item.image_id in relabel
                    and pred.depth_blob_sha256 != item.depth.sha256):
                lost, pred.depth_blob_sha256 = pred.depth_blob_sha256, item.depth.sha256
                _forget_blob(s, lost)
            ensure_task(session=s, user=user, image_id=item.image_id, prediction_id=pred.id,
                        priority=item.score)
            created_n += int(created)
    return created_n


def _forget_blob(session: Session, sha256: str) -> None:
    """Delete the row of a blob whose file is lost, unless another row still points to it (the
    foreign keys refuse; a savepoint keeps the rest of the transaction)."""
    session.flush()
    try:
        with session.begin_nested():
            session.execute(delete(Blob).where(Blob.sha256 == sha256))
    except IntegrityError:
        log.warning("blob %s is lost but still referenced; `depthweb db check` reports it",
                    sha256[:12])


def _warm(ctx: ReviewContext, todo: Todo, result: DepthResult, photo: np.ndarray,
          item: Labelled) -> None:
    """The review previews of a new task, from what the run holds (best effort: a page
    makes missing ones on first view)."""
    try:
        warm_photo(ctx.previews, todo.blob.sha256, result.depth.shape[:2], lambda: photo)
        warm_teacher(ctx.previews, item.depth.sha256, item.kind, lambda: _masked(result),
                     item.intrinsics, item.model)
    except (OSError, ValueError) as exc:
        log.warning("could not write the review previews of %s: %s", todo.name, exc)


def job_tracker(ctx: ReviewContext, plan: Plan, model: str, user: Actor,
                **params: object) -> JobTracker:
    """The jobs-table row of a run (written by :meth:`JobTracker.start` once the run is
    planned, so a refused run leaves none)."""
    return JobTracker(ctx, JobKind.PSEUDO_LABEL, plan.dataset, user, model=model,
                      params={k: v for k, v in params.items() if v is not None})


def check_options(batch_size: int, uncertainty: str) -> None:
    """One sentence for a bad batch size or uncertainty mode, before any work."""
    if batch_size < 1:
        raise InputError("--batch-size must be at least 1.")
    second_model_name(uncertainty)


def pseudo_label(
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
    decode_threads: int = 2,
) -> PseudoLabelReport:
    """Predict every image of ``dataset`` that has no prediction from (model, weights) yet (or
    whose prediction file is missing), in this process, pipelined.

    ``uncertainty``: ``flip`` | ``none`` | ``second-model:<name>`` (``second_weights`` for it).
    ``limit`` caps the number of images of this run. ``user`` must be an admin (CLI: SYSTEM).
    """
    require_role(user, Role.ADMIN)
    check_options(batch_size, uncertainty)
    t0 = time.perf_counter()
    labeller = Labeller(model, weights, settings=ctx.settings, device=device,
                        uncertainty=uncertainty, second_weights=second_weights)
    plan = plan_job(ctx, dataset, model, labeller.weights, limit)
    report = PseudoLabelReport(plan.dataset, model, labeller.weights,
                               already_done=plan.already_done)
    state = {"done": 0, "committed": 0}
    job = job_tracker(ctx, plan, model, user, engine="in-process", weights=labeller.weights,
                      batch_size=batch_size, uncertainty=uncertainty, limit=limit)

    def write(out: list[tuple[Todo, DepthResult, float, np.ndarray]]) -> list[Labelled]:
        # writer thread: files, then the batch's rows, then the job's row (so its count is
        # what is committed, even when a later batch fails); then the review previews
        batch = [Labeller.store(ctx.store, todo, result, score)
                 for todo, result, score, _ in out]
        report.labelled += commit_labelled(ctx, user, labeller.weights, batch, plan.relabel)
        state["committed"] += len(batch)
        job.progress(state["committed"] + len(report.failed), len(plan.todo))
        if ctx.previews is not None:
            for (todo, result, _, photo), item in zip(out, batch, strict=True):
                _warm(ctx, todo, result, photo, item)
        return batch

    def written(batch: list[Labelled]) -> None:
        for item in batch:
            report.relabelled += int(item.image_id in plan.relabel)
            report.uncertainties.append(item.score)
            state["done"] += 1
            if progress is not None:
                progress(state["done"], len(plan.todo), item.name)

    def failed(todo: Todo, exc: InputError) -> None:
        report.failed.append((todo.name, str(exc)))
        state["done"] += 1

    with job:
        job.start(len(plan.todo), f"{plan.already_done} already done")
        Pipeline(
            decode=lambda todo: with_photo_preview(decode(ctx.store, ctx.settings, todo)),
            infer=lambda todos, data: [(t, *pair, d[2]) for t, pair, d in zip(
                todos, labeller.predict([d[0] for d in data], [d[1] for d in data]), data,
                strict=True)],
            write=write, on_written=written, on_error=failed, decode_threads=decode_threads,
        ).run(plan.todo, batch_size)
        report.seconds = time.perf_counter() - t0
        job.finish(report.summary(), done=state["done"])
    log.info("pseudo-label %s", report.summary())
    return report

