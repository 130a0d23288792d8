"""The review page of one task, as its viewer may see it, and its pictures at display size.

:func:`page_data` reads what the page needs in one read-only session (the task, the viewer's
label — one stored label, never a replay of the history — and the history rows the viewer may
see: on crowd and gold tasks a reviewer sees only their own rows). :func:`render` turns it into
display-size pictures; pictures are cached per content (photo sha256, prediction, label blobs),
so a page shown again costs no decoding. The 3D view is built only on request
(:func:`label_figure`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from depthweb.services import visuals
from depthweb.services.review.context import ReviewContext
from depthweb.services.review.labels import (
    LIMITS,
    Label,
    _label,
    _stored_map,
    image_rgb,
    is_stored,
    label_source,
    prediction_intrinsics,
    read_array,
    replay_branch,
    teacher_map,
)
from depthweb.store.models import Revision, Role, Task, TaskStatus, User
from depthweb.store.repo import is_branchy, label_head, recent_history
from depthweb.store.repo.branches import branch_of
from depthweb.types import DepthKind, DepthResult, Intrinsics

DISPLAY_MAX_SIDE = 1024
PREVIEW_MAX_SIDE = 640  # depth pictures (shown 360 px high)
HISTORY_ROWS = 100  # the newest history rows a page shows
IGNORE_TINT = (255, 0, 255)
FAR_TINT = (40, 90, 255)


@dataclass(frozen=True)
class HistoryRow:
    version: int
    when: str
    author: str
    action: str
    details: str


@dataclass(frozen=True)
class TaskPage:
    """What the Review tab shows for one task. ``photo``, ``teacher_picture`` and
    ``label_picture`` are RGB uint8 (h, w, 3) at display size; ``label_shape`` is (H, W) of the
    label. ``status`` is what the viewer may know (on crowd and gold tasks a reviewer sees their
    own progress, not the others'); ``limits`` the correction limits stated on the page."""

    task_id: int
    version: int
    status: str
    priority: float
    uncertainty: float | None
    image_name: str
    teacher: str
    teacher_weights: str
    kind: str
    source: str
    n_corrections: int
    is_gold: bool
    assignee: str | None
    label_shape: tuple[int, int]
    photo: np.ndarray
    teacher_picture: np.ndarray
    label_picture: np.ndarray
    history: list[HistoryRow]
    notes: list[tuple[str, str]]
    can_undo: bool = False
    limits: dict[str, int] | None = None
    photo_file: str = ""
    teacher_file: str = ""
    label_file: str = ""


@dataclass(frozen=True)
class PageData:
    """What :func:`page_data` read (rows detached from their session)."""

    task: dict[str, Any]
    label: LabelRef
    image: Any
    prediction: Any
    history: list[HistoryRow]
    notes: list[tuple[str, str]]
    can_undo: bool


def _details(rev: Revision) -> str:
    p = rev.payload or {}
    if rev.action in ("approve", "reject"):
        parts = [", ".join(p.get("reasons") or []), p.get("note", "")]
        return " · ".join(x for x in parts if x)
    if rev.action == "note":
        return str(p.get("text", ""))
    if rev.action == "anchors":
        return f"{len(p.get('anchors') or [])} anchor(s)"
    if rev.action == "ordinal":
        mode = " (global tilt)" if p.get("mode") == "tilt" else ""
        return f"{len(p.get('pairs') or [])} pair(s){mode}"
    if rev.action in ("adjudicate", "pick"):
        return " · ".join(str(x) for x in (p.get("decision", ""), p.get("branch", ""),
                                           p.get("note", "")) if x)
    if rev.action == "mask":
        return f"mode {p.get('mode', 'union')}"
    if rev.action == "undo":
        return f"undid revision {p.get('undoes')}"
    return ""


def _history(revs: list[Revision]) -> tuple[list[HistoryRow], list[tuple[str, str]]]:
    rows, notes = [], []
    for rev in revs:
        author = rev.author.name if rev.author is not None else "?"
        rows.append(HistoryRow(rev.task_version, rev.created_at.strftime("%Y-%m-%d %H:%M UTC"),
                               author, rev.action, _details(rev)))
        text = (rev.payload or {}).get("text" if rev.action == "note" else "note")
        if text:
            notes.append((author, str(text)))
    return rows, notes


def viewer_status(session: Session, task: Task, viewer: User) -> str:
    """The status a viewer sees: the task's, except on crowd and gold tasks where a reviewer
    sees their own progress (in_review until they decide, then their decision)."""
    if viewer.role == Role.ADMIN or not is_branchy(task):
        return str(task.status)
    if task.status in (TaskStatus.APPROVED, TaskStatus.REJECTED) and not task.is_gold:
        return str(task.status)
    mine = session.scalar(select(Revision.action).where(
        Revision.task_id == task.id, Revision.author_id == viewer.id,
        Revision.action.in_(("approve", "reject"))).order_by(Revision.task_version.desc())
        .limit(1))
    if mine:
        return "approved" if mine == "approve" else "rejected"
    return TaskStatus.IN_REVIEW.value


@dataclass(frozen=True)
class LabelRef:
    """A branch's label before its arrays are read: what a page shows of it (``key``,
    ``shape``, ``kind``, ``source``, ``totals``) and :meth:`load` for the arrays (read only when
    a picture is not cached yet, or for the 3D view)."""

    key: tuple[str | None, str | None]
    shape: tuple[int, int]
    kind: DepthKind
    source: str
    intrinsics: Intrinsics
    totals: dict[str, int]
    loader: Callable[[], Label] = field(repr=False, compare=False)

    @property
    def n_corrections(self) -> int:
        return int(self.totals.get("corrections", 0))

    def load(self) -> Label:
        return self.loader()


def label_ref(label: Label) -> LabelRef:
    """A label in hand as a :class:`LabelRef`."""
    return LabelRef(label.key, label.map.shape, label.kind, label.source, label.intrinsics,
                    label.totals, lambda: label)


def branch_label_ref(ctx: ReviewContext, session: Session, task: Task,
                     branch_id: int | None) -> tuple[LabelRef, Revision | None]:
    """:func:`branch_label` without reading the label's arrays (a branch stored before labels
    were kept is replayed now, while the session is open)."""
    head = label_head(session, task.id, branch_id)
    pred = task.prediction
    if head is not None and not is_stored(head):
        return label_ref(replay_branch(ctx, session, task, branch_id)), head
    totals = dict((head.payload or {}).get("totals") or {}) if head is not None else {}
    blob = head.label_blob if head is not None else None
    if blob is None:
        kind = DepthKind(pred.kind)
        shape = pred.depth_blob.shape

        def load() -> Label:
            return _label(ctx, task, teacher_map(ctx, pred), head)
    else:
        kind = DepthKind((head.payload or {}).get("label_kind",
                                                  DepthKind.RELATIVE_DISPARITY.value))
        shape = blob.shape
        _ = head.flags_blob.sha256  # loaded now: the session closes before load()

        def load() -> Label:
            return _label(ctx, task, _stored_map(ctx, head), head)
    key = (head.label_blob_sha256, head.flags_blob_sha256) if head is not None else (None, None)
    return LabelRef(key, (int(shape[0]), int(shape[1])), kind,
                    label_source(pred, int(totals.get("corrections", 0))),
                    prediction_intrinsics(pred), totals, load), head


def page_data(ctx: ReviewContext, session: Session, task: Task, viewer: User) -> PageData:
    """Everything the page shows, read in ``session`` (raises BrokenTaskError on a missing or
    corrupt file)."""
    branch = branch_of(task, viewer) if viewer.role != Role.VIEWER else None
    label, head = branch_label_ref(ctx, session, task, branch)
    seen, _total = recent_history(session, task, viewer, HISTORY_ROWS)
    history, notes = _history(seen)
    can_undo = (head is not None and head.author_id == viewer.id
                and head.action not in ("undo", "pick"))
    info = {
        "task_id": task.id, "version": task.version,
        "status": viewer_status(session, task, viewer), "priority": float(task.priority),
        "is_gold": bool(task.is_gold),
        "assignee": (task.assignee.name if task.assignee and (
            viewer.role == Role.ADMIN or task.assignee_id == viewer.id) else None),
    }
    image, pred = task.image, task.prediction
    _ = (image.blob.path, pred.depth_blob.path, image.sha256, pred.uncertainty)  # load them
    session.expunge_all()  # rows are read; keep them usable after the session closes
    return PageData(info, label, image, pred, history, notes, can_undo)


# ------------------------------------------------------------------------------ pictures
def _result(depth: np.ndarray, label: Label, model: str) -> DepthResult:
    return DepthResult(depth, label.kind, label.intrinsics, model=model)


def _small(arr: np.ndarray, shape: tuple[int, int], side: int = DISPLAY_MAX_SIDE
           ) -> np.ndarray:
    """An (H, W) array shrunk (nearest) so its longer side is at most ``side``."""
    import cv2

    h, w = shape
    s = max(h, w) / float(side)
    if s <= 1:
        return arr
    size = (max(1, round(w / s)), max(1, round(h / s)))
    return cv2.resize(arr, size, interpolation=cv2.INTER_NEAREST)


def tint(picture: np.ndarray, mask: np.ndarray, color: tuple[int, int, int],
         alpha: float = 0.55) -> np.ndarray:
    """``picture`` (h, w, 3) uint8 with ``mask`` (any size, bool) blended in ``color``."""
    import cv2

    if not mask.any():
        return picture
    h, w = picture.shape[:2]
    small = cv2.resize(mask.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0
    out = picture.copy()
    out[small] = ((1 - alpha) * out[small] + alpha * np.asarray(color)).astype(np.uint8)
    return out


def _photo(ctx: ReviewContext, image: Any, shape: tuple[int, int]) -> np.ndarray:
    def make() -> np.ndarray:
        import cv2

        rgb = image_rgb(ctx, image, preview_side=DISPLAY_MAX_SIDE)
        small = visuals.downscale(rgb, DISPLAY_MAX_SIDE)
        target = _small(np.zeros(shape, np.uint8), shape).shape
        if small.shape[:2] != target:  # display the photo on the label's grid
            small = cv2.resize(small, (target[1], target[0]), interpolation=cv2.INTER_AREA)
        return small

    return ctx.cache.get_or_make(("photo", image.sha256, shape), make)


def label_picture(ctx: ReviewContext, ref: LabelRef, model: str) -> np.ndarray:
    """The label's display picture (far and ignored pixels tinted), cached per label."""

    def make() -> np.ndarray:
        label = ref.load()
        depth = _small(label.depth, label.map.shape, PREVIEW_MAX_SIDE)
        pic = visuals.depth_preview(_result(depth, label, model))
        return tint(tint(pic, label.far_mask, FAR_TINT), label.ignore_mask, IGNORE_TINT)

    return ctx.cache.get_or_make(("label", ref.key), make)


def _teacher_picture(ctx: ReviewContext, pred: Any, label: LabelRef) -> np.ndarray:
    def make() -> np.ndarray:
        raw = read_array(ctx, pred.depth_blob, "teacher prediction", readonly=True)
        depth = _small(raw, raw.shape, PREVIEW_MAX_SIDE).astype(np.float32, copy=False)
        return visuals.depth_preview(DepthResult(depth, DepthKind(pred.kind), label.intrinsics,
                                                 model=pred.model))

    return ctx.cache.get_or_make(("teacher", pred.id), make)


def render(ctx: ReviewContext, data: PageData) -> TaskPage:
    """The page's display-size pictures (arrays, and their encoded files) and fields."""
    label, pred, image = data.label, data.prediction, data.image
    shape = label.shape
    photo = _photo(ctx, image, shape)
    teacher = _teacher_picture(ctx, pred, label)
    teacher_file = ctx.pictures.path(("teacher", pred.id), teacher, "jpeg")
    if label.key == (None, None):
        label_pic, label_file = teacher, ctx.pictures.path(("teacher", pred.id), teacher,
                                                           "png")
    else:
        label_pic = label_picture(ctx, label, pred.model)
        label_file = ctx.pictures.path(("label", label.key), label_pic, "png")
    return TaskPage(
        **data.task, uncertainty=pred.uncertainty, image_name=image.original_filename,
        teacher=pred.model, teacher_weights=pred.weights, kind=str(label.kind),
        source=label.source, n_corrections=label.n_corrections, label_shape=shape,
        photo=photo, teacher_picture=teacher, label_picture=label_pic,
        history=data.history, notes=data.notes, can_undo=data.can_undo, limits=dict(LIMITS),
        photo_file=ctx.pictures.path(("photo", image.sha256, shape), photo, "jpeg"),
        teacher_file=teacher_file, label_file=label_file,
    )


def label_figure(ctx: ReviewContext, data: PageData) -> Any:
    """The plotly 3D view of the viewer's label (None when nothing is left to show)."""
    label, pred = data.label.load(), data.prediction
    h, w = label.map.shape
    rgb = image_rgb(ctx, data.image, preview_side=max(h, w))
    if rgb.shape[:2] != (h, w):
        import cv2

        rgb = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)
    shown = np.where(label.ignore_mask, np.float32(np.nan), label.depth)
    result = _result(shown, label, pred.model)
    title = f"Task {data.task['task_id']}: current label ({label.source}, {label.kind})"
    return visuals.mesh_figure(visuals.shape_depth(result), rgb, result, title)
