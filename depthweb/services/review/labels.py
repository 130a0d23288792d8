"""The current label of a review task: teacher prediction + its corrections, in order.

A label is never stored; it is recomputed from the teacher prediction's depth blob and the
task's correction revisions (mask, anchors, ordinal, plane_fill, far_fill) with
:func:`depthweb.geometry.corrections.apply_correction`, so the same history always gives the same
label, bit for bit. :func:`save_correction` computes the new label *before* writing anything
(an impossible correction is refused with a sentence and nothing is saved), writes the region
blob, then appends the revision (version-guarded: a stale save raises
:class:`~depthweb.store.StaleRevisionError` and loses nothing).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from depthweb.errors import InputError
from depthweb.geometry.corrections import LabelMap, apply_correction
from depthweb.services.review.context import ReviewContext
from depthweb.store import BlobRef, BlobStore, StaleRevisionError
from depthweb.store.auth import Actor, require_role
from depthweb.store.models import CORRECTION_ACTIONS, Action, Image, Prediction, Revision
from depthweb.store.repo import add_correction, current_corrections, get_task
from depthweb.store.repo.review import REVIEW_ROLES
from depthweb.types import DepthKind, Intrinsics, IntrinsicsSource

GROUND_TRUTH_MODEL = "ground_truth"
"""Predictions stored under this model name are ground truth (``source: ground_truth``)."""


@dataclass(frozen=True)
class Label:
    """A task's label. ``depth`` float32 (H, W) in ``kind`` space, NaN invalid;
    ``ignore_mask``/``far_mask`` bool (H, W); ``source``: ground_truth | corrected | pseudo;
    ``intrinsics`` of the teacher prediction (pixels of ``depth``)."""

    depth: np.ndarray
    kind: DepthKind
    ignore_mask: np.ndarray
    far_mask: np.ndarray
    source: str
    intrinsics: Intrinsics
    prediction_id: int
    task_id: int | None = None
    n_corrections: int = 0

    @property
    def label_map(self) -> LabelMap:
        return LabelMap(self.depth, self.kind, self.ignore_mask, self.far_mask)

    def equals(self, other: Label) -> bool:
        """Same arrays (NaN == NaN), kind and source."""
        return self.source == other.source and self.label_map.equals(other.label_map)


@dataclass(frozen=True)
class CorrectionResult:
    """A saved correction: its revision, the task version it produced, and the new label."""

    revision_id: int
    task_version: int
    label: Label


def prediction_intrinsics(pred: Prediction) -> Intrinsics:
    return Intrinsics(pred.fx, pred.fy, pred.cx, pred.cy,
                      IntrinsicsSource(pred.intrinsics_source), pred.intrinsics_note or "")


def teacher_map(store: BlobStore, pred: Prediction) -> LabelMap:
    """The teacher prediction as a label (float32 (H, W) in its kind's space)."""
    depth = store.get_array(BlobRef.from_row(pred.depth_blob))
    return LabelMap.from_prediction(depth, pred.kind)


def _region(store: BlobStore, rev: Revision) -> np.ndarray | None:
    if rev.blob is None:
        return None
    return store.get_array(BlobRef.from_row(rev.blob)).astype(bool)


def label_source(pred: Prediction, n_corrections: int) -> str:
    """corrected | ground_truth | pseudo."""
    if n_corrections:
        return "corrected"
    return "ground_truth" if pred.model == GROUND_TRUTH_MODEL else "pseudo"


def build_label(
    store: BlobStore,
    pred: Prediction,
    corrections: Sequence[Revision],
    *,
    task_id: int | None = None,
) -> Label:
    """Teacher prediction + ``corrections`` (oldest first) -> :class:`Label`."""
    intr = prediction_intrinsics(pred)
    label = teacher_map(store, pred)
    for rev in corrections:
        label = apply_correction(label, rev.action, rev.payload, _region(store, rev), intr)
    return Label(label.depth, label.kind, label.ignore, label.far,
                 label_source(pred, len(corrections)), intr, pred.id, task_id, len(corrections))


def current_label(session: Session, task_id: int, *, store: BlobStore) -> Label:
    """The task's label recomputed from its teacher prediction and its corrections."""
    task = get_task(session, task_id)
    return build_label(store, task.prediction, current_corrections(session, task_id),
                       task_id=task_id)


def image_rgb(store: BlobStore, image: Image) -> np.ndarray:
    """The stored image as RGB uint8 (H, W, 3)."""
    from depthweb.imaging import load_image

    data = store.get_bytes(BlobRef.from_row(image.blob))
    # Stored images were checked when imported; the aspect limit may be newer than the image.
    return load_image(data, name=image.original_filename or "image",
                      max_pixels=max(image.width * image.height, 1), max_aspect=None).rgb


def clean_payload(payload: Mapping[str, Any] | None) -> dict[str, Any]:
    """The payload as it will be stored (JSON round trip), so the label computed now is the
    label recomputed later."""
    try:
        return json.loads(json.dumps(dict(payload or {}), default=_json_number))
    except (TypeError, ValueError) as exc:
        raise InputError(f"The correction's details cannot be saved: {exc}.") from exc


def _json_number(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def preview_correction(
    session: Session,
    task_id: int,
    *,
    store: BlobStore,
    action: Action | str,
    payload: Mapping[str, Any] | None = None,
    region: np.ndarray | None = None,
) -> Label:
    """The label the task would have after this correction (nothing is saved)."""
    action = Action(action)
    if action not in CORRECTION_ACTIONS:
        raise InputError(f"{action} is not a label correction.")
    base = current_label(session, task_id, store=store)
    new = apply_correction(base.label_map, action.value, clean_payload(payload), region,
                           base.intrinsics)
    return Label(new.depth, new.kind, new.ignore, new.far, "corrected", base.intrinsics,
                 base.prediction_id, task_id, base.n_corrections + 1)


def save_correction(
    ctx: ReviewContext,
    *,
    task_id: int,
    user: Actor,
    expected_version: int,
    action: Action | str,
    payload: Mapping[str, Any] | None = None,
    region: np.ndarray | None = None,
) -> CorrectionResult:
    """Validate and compute, write the region blob, then append the correction revision.

    ``region``: bool (H, W) for mask / plane_fill / far_fill (for ``mask``, ``payload["mode"]``
    is union (default), replace or subtract). Raises ``InputError`` for an impossible
    correction and ``StaleRevisionError`` when the task moved past ``expected_version``; in both
    cases nothing is saved.
    """
    require_role(user, *REVIEW_ROLES)  # before any file is written
    payload = clean_payload(payload)
    with ctx.session(readonly=True) as s:
        current = get_task(s, task_id).version
        if current != expected_version:
            raise StaleRevisionError(task_id, expected_version, current)
        label = preview_correction(s, task_id, store=ctx.store, action=action,
                                   payload=payload, region=region)
    ref = ctx.store.put_array(np.asarray(region, dtype=bool)) if region is not None else None
    with ctx.session() as s:
        rev = add_correction(session=s, task_id=task_id, user=user,
                             expected_version=expected_version, action=action, payload=payload,
                             blob=ref, store=ctx.store)
        return CorrectionResult(rev.id, rev.task_version, label)


@dataclass(frozen=True)
class TaskView:
    """Everything the review page shows for one task."""

    task_id: int
    version: int
    status: str
    priority: float
    image_name: str
    rgb: np.ndarray
    label: Label
    teacher: str
    teacher_weights: str


def load_task_view(session: Session, task_id: int, *, store: BlobStore) -> TaskView:
    """The task's photo (RGB uint8 (H, W, 3)), current label and metadata."""
    task = get_task(session, task_id)
    return TaskView(task.id, task.version, task.status, float(task.priority),
                    task.image.original_filename, image_rgb(store, task.image),
                    current_label(session, task_id, store=store),
                    task.prediction.model, task.prediction.weights)
