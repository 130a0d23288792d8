"""The review page of one task, as its viewer may see it, and its pictures at display size.

:func:`page_data` reads what the page needs in one read-only session (the task, the viewer's
label — one stored label, never a replay of the history — and the history rows the viewer may
see: on crowd and gold tasks a reviewer sees only their own rows). :func:`render` turns it into
display-size pictures; pictures are cached per content (photo sha256, prediction, label blobs),
so a page shown again costs no decoding. The 3D view is built only on request
(:func:`label_figure`).
"""

from __future__ import annotations

import logging
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
    read_blob,
    recover_label,
    replay_branch,
    teacher_map,
)
from depthweb.services.review.previews import (
    DISPLAY_MAX_SIDE,
    PREVIEW_MAX_SIDE,
    Preview,
    photo_name,
    photo_picture,
    teacher_name,
)
from depthweb.services.review.previews import small as _small
from depthweb.services.review.previews import teacher_picture as _teacher_colours
from depthweb.store.blobs import BlobRef
from depthweb.store.errors import BrokenTaskError
from depthweb.store.models import Revision, Role, Task, TaskStatus, User
from depthweb.store.repo import get_task, is_branchy, label_head, recent_history
from depthweb.store.repo.branches import branch_of, label_key
from depthweb.types import DepthKind, DepthResult, Intrinsics

log = logging.getLogger(__name__)

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
            try:
                return _label(ctx, task, _stored_map(ctx, head), head)
            except BrokenTaskError:  # a correction's label: replayed, written again
                with ctx.session(readonly=True) as s:
                    return recover_label(ctx, s, get_task(s, task.id), branch_id, head)
    return LabelRef(label_key(head), (int(shape[0]), int(shape[1])), kind,
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


def verify_blob(ctx: ReviewContext, row: Any, what: str) -> None:
    """A page shown from previews still refuses a task whose file is missing or corrupt: the
    sha256 is checked once per process (:func:`read_blob`), later views check the file exists."""
    if ctx.cache.is_verified(row.sha256):
        if not ctx.store.exists(BlobRef.from_row(row)):
            ctx.cache.forget(row.sha256)
            raise BrokenTaskError(f"The {what} file ({row.sha256[:12]}) is missing.")
        return
    read_blob(ctx, row, what)


def _preview(ctx: ReviewContext, key: Any, name: str, fmt: str, blob: Any, what: str,
             make: Callable[[], np.ndarray]) -> Preview:
    """The picture ``name`` from the previews folder, else made and kept there (cached in
    memory per ``key``). The ``blob`` it shows is verified whenever the memory cache misses,
    so a picture from the previews folder never hides a missing or corrupt file."""

    def load() -> Preview:
        verify_blob(ctx, blob, what)
        found = ctx.previews.read(name, fmt) if ctx.previews is not None else None
        if found is not None:
            return found
        picture = make()
        if ctx.previews is None:
            return Preview(picture, None)
        try:
            return ctx.previews.write(name, fmt, picture)
        except OSError as exc:  # a read-only or full disk: show the page anyway
            log.warning("could not keep the preview %s: %s", name, exc)
            return Preview(picture, None)

    return ctx.cache.get_or_make(key, load)


def _photo(ctx: ReviewContext, image: Any, shape: tuple[int, int]) -> Preview:
    def make() -> np.ndarray:
        return photo_picture(image_rgb(ctx, image, preview_side=DISPLAY_MAX_SIDE), shape)

    return _preview(ctx, ("photo", image.sha256, shape), photo_name(image.sha256, shape), "jpeg",
                    image.blob, "photo", make)


def label_picture(ctx: ReviewContext, ref: LabelRef, model: str) -> np.ndarray:
    """The label's display picture (far and ignored pixels tinted), cached per label."""

    def make() -> np.ndarray:
        label = ref.load()
        depth = _small(label.depth, label.map.shape, PREVIEW_MAX_SIDE)
        pic = visuals.depth_preview(_result(depth, label, model))
        return tint(tint(pic, label.far_mask, FAR_TINT), label.ignore_mask, IGNORE_TINT)

    return ctx.cache.get_or_make(("label", ref.key), make)


def _teacher_picture(ctx: ReviewContext, pred: Any, label: LabelRef) -> Preview:
    """The teacher's coloured prediction (a lossless PNG preview: it is also the label picture
    of a task nobody corrected yet)."""
    def make() -> np.ndarray:
        raw = read_array(ctx, pred.depth_blob, "teacher prediction", readonly=True)
        return _teacher_colours(raw, pred.kind, label.intrinsics, pred.model)

    return _preview(ctx, ("teacher", pred.id), teacher_name(pred.depth_blob_sha256, pred.kind),
                    "png", pred.depth_blob, "teacher prediction", make)


def _file(ctx: ReviewContext, key: Any, preview: Preview, name: str, fmt: str) -> str:
    """A file Gradio may serve for ``preview`` in ``fmt``: the previews folder's file (written
    when missing) copied into the served folder, else the picture encoded once."""
    served = ctx.pictures.get(key, fmt)
    if served is not None:
        return served
    if ctx.previews is not None:
        try:
            path = ctx.previews.path(name, fmt)
            if not path.is_file():
                path = ctx.previews.write(name, fmt, preview.picture).path
            return ctx.pictures.copy_in(key, fmt, path)
        except OSError as exc:
            log.warning("could not keep the preview %s: %s", name, exc)
    return ctx.pictures.path(key, preview.picture, fmt)


def render(ctx: ReviewContext, data: PageData) -> TaskPage:
    """The page's display-size pictures (arrays, and their encoded files) and fields."""
    label, pred, image = data.label, data.prediction, data.image
    shape = label.shape
    photo = _photo(ctx, image, shape)
    teacher = _teacher_picture(ctx, pred, label)
    teacher_key = ("teacher", pred.id)
    tname = teacher_name(pred.depth_blob_sha256, pred.kind)
    teacher_file = _file(ctx, teacher_key, teacher, tname, "jpeg")
    if label.key == (None, None):
        label_pic, label_file = teacher.picture, _file(ctx, teacher_key, teacher, tname, "png")
    else:
        label_pic = label_picture(ctx, label, pred.model)
        label_file = ctx.pictures.path(("label", label.key), label_pic, "png")
    return TaskPage(
        **data.task, uncertainty=pred.uncertainty, image_name=image.original_filename,
        teacher=pred.model, teacher_weights=pred.weights, kind=str(label.kind),
        source=label.source, n_corrections=label.n_corrections, label_shape=shape,
        photo=photo.picture, teacher_picture=teacher.picture, label_picture=label_pic,
        history=data.history, notes=data.notes, can_undo=data.can_undo, limits=dict(LIMITS),
        photo_file=_file(ctx, ("photo", image.sha256, shape), photo,
                         photo_name(image.sha256, shape), "jpeg"),
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

