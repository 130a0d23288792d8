"""The pseudo-labelling job: a teacher model predicts depth for every image of a dataset.

Resumable and idempotent: the job asks the database which images have no prediction from
(model, weights) yet and only runs those. Each image is its own transaction, in this order:
the depth blob is written (atomically) to the blob store, then the prediction and review-task
rows are committed together. A job killed at any point leaves at worst a blob file without a
row; re-running predicts that image again (same model, same input: the same bytes, so the same
content-addressed file, which now gets its row) and never adds a second prediction.

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
from sqlalchemy import func, select

from depthweb.errors import InputError
from depthweb.geometry.align import fit_scale_shift
from depthweb.geometry.backproject import depth_to_disparity, disparity_to_depth
from depthweb.geometry.intrinsics import resolve_intrinsics
from depthweb.imaging import load_image
from depthweb.models.base import DepthBackend
from depthweb.models.registry import load_backend
from depthweb.services.review.context import ReviewContext
from depthweb.store import BlobRef
from depthweb.store.auth import Actor, require_role
from depthweb.store.models import Image, Role
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
    failed: list[tuple[str, str]] = field(default_factory=list)
    uncertainties: list[float] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        mean = f", mean uncertainty {np.mean(self.uncertainties):.4f}" if self.uncertainties else ""
        return (f"{self.dataset}: {self.labelled} labelled by {self.model}, {self.already_done} "
                f"already done, {len(self.failed)} failed in {self.seconds:.1f} s{mean}")


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


class Uncertainty:
    """Scores for a batch of teacher results (see the module docstring)."""

    def __init__(
        self, mode: str, teacher: DepthBackend, load_second: Callable[[str], DepthBackend]
    ) -> None:
        self.mode = mode
        self.teacher = teacher
        self.second: DepthBackend | None = None
        if mode.startswith(SECOND_MODEL_PREFIX):
            name = mode[len(SECOND_MODEL_PREFIX):].strip()
            if not name:
                raise InputError("Name the second model: --uncertainty second-model:NAME.")
            self.second = load_second(name)
        elif mode not in ("flip", "none"):
            raise InputError(
                f"Unknown uncertainty {mode!r}; use flip, none or second-model:NAME."
            )

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
class _Todo:
    """What the job needs of an image (read while the session is open)."""

    image_id: int
    name: str
    blob: BlobRef
    exif_focal_35mm: float | None

    @classmethod
    def of(cls, image: Image) -> _Todo:
        return cls(image.id, image.original_filename or f"image {image.id}",
                   BlobRef.from_row(image.blob), image.exif_focal_35mm)


def _decode(ctx: ReviewContext, todo: _Todo) -> tuple[np.ndarray, Intrinsics]:
    data = ctx.store.get_bytes(todo.blob)
    loaded = load_image(data, max_pixels=ctx.settings.max_pixels, name=todo.name)
    cam = resolve_intrinsics(loaded.width, loaded.height, exif_focal_35mm=todo.exif_focal_35mm,
                             default_fov_deg=ctx.settings.default_fov_deg)
    return loaded.rgb, cam


def _save(ctx: ReviewContext, user: Actor, image_id: int, result: DepthResult,
          weights: str, score: float) -> bool:
    """File first, then prediction + task in one transaction; False when already there."""
    ref = ctx.store.put_array(_masked(result))
    with ctx.session() as s:
        pred, created = add_prediction(
            session=s, user=user, image_id=image_id, model=result.model, weights=weights,
            kind=result.kind, intrinsics=result.intrinsics, depth=ref, store=ctx.store,
            uncertainty=score,
        )
        ensure_task(session=s, user=user, image_id=image_id, prediction_id=pred.id,
                    priority=score)
    return created


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
) -> PseudoLabelReport:
    """Predict every image of ``dataset`` that has no prediction from (model, weights) yet.

    ``uncertainty``: ``flip`` | ``none`` | ``second-model:<name>`` (``second_weights`` for it).
    ``limit`` caps the number of images of this run. ``user`` must be an admin (CLI: SYSTEM).
    """
    require_role(user, Role.ADMIN)
    if batch_size < 1:
        raise InputError("--batch-size must be at least 1.")
    t0 = time.perf_counter()
    settings = ctx.settings
    teacher = load_backend(model, weights, device=device, settings=settings)
    scorer = Uncertainty(uncertainty, teacher, lambda name: load_backend(
        name, second_weights, device=device, settings=settings))
    wkey = weights_key(teacher.weights_label)
    with ctx.session(readonly=True) as s:
        ds = _require_dataset(s, dataset)
        todo = [_Todo.of(im) for im in
                images_without_prediction(s, dataset_id=ds.id, model=model, weights=wkey)]
        n_images = int(s.scalar(select(func.count(Image.id)).where(Image.dataset_id == ds.id)))
    report = PseudoLabelReport(ds.name, model, wkey, already_done=n_images - len(todo))
    todo = todo[:limit] if limit is not None else todo
    done = 0
    for start in range(0, len(todo), batch_size):
        chunk = todo[start:start + batch_size]
        ok: list[tuple[_Todo, np.ndarray, Intrinsics]] = []
        for item in chunk:
            try:
                ok.append((item, *_decode(ctx, item)))
            except InputError as exc:
                report.failed.append((item.name, str(exc)))
        rgbs, cams = [o[1] for o in ok], [o[2] for o in ok]
        results = teacher.infer_batch(rgbs, cams) if ok else []
        scores = scorer.scores(rgbs, cams, results) if ok else []
        for (item, _, _), result, score in zip(ok, results, scores, strict=True):
            report.labelled += int(_save(ctx, user, item.image_id, result, wkey, score))
            report.uncertainties.append(score)
            done += 1
            if progress is not None:
                progress(done, len(todo), item.name)
        done += len(chunk) - len(ok)
    report.seconds = time.perf_counter() - t0
    log.info("pseudo-label %s", report.summary())
    return report
