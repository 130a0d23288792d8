"""Review use cases behind the Review tab: the next task for a user, the task page, and every
save (approve, reject, mask, anchors, ordinal pairs, region fill, note) against an expected task
version.

Every function takes the user *name* as the web server authenticated it (``gr.Request.username``
or the name mapped from a Hugging Face login) and loads that user from the database inside the
call, so a disabled or demoted account loses its rights at once. Role checks happen in the
repository functions (reviewers and admins write, viewers only look; no name = not logged in:
:class:`~depthweb.store.PermissionDeniedError`). A save against a stale version raises
:class:`~depthweb.store.StaleRevisionError` and writes nothing.

Pictures in a :class:`TaskPage` are at *display* size (longer side at most
:data:`DISPLAY_MAX_SIDE`); points and regions are stored in *label* pixels: use
:func:`to_label` / :func:`to_display` to go between the two.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from depthweb.errors import InputError
from depthweb.services import visuals
from depthweb.services.review.context import ReviewContext
from depthweb.services.review.labels import Label, load_task_view, save_correction, teacher_map
from depthweb.store import SYSTEM, Role, create_user, get_user, require_role, update_user
from depthweb.store.auth import NAME_RE
from depthweb.store.models import Action, Revision, User
from depthweb.store.repo import (
    add_note,
    approve_task,
    get_task,
    next_task,
    reject_task,
    require_dataset,
    task_history,
)
from depthweb.types import DepthResult

log = logging.getLogger(__name__)

REASON_TAGS = ("sky", "glass", "mirror", "people", "blur", "wrong scale", "other")
"""Reason tags offered when rejecting a label."""
DISPLAY_MAX_SIDE = 1024
REGION_ACTIONS = {"mask": Action.MASK, "plane": Action.PLANE_FILL, "far": Action.FAR_FILL}
IGNORE_TINT = (255, 0, 255)
FAR_TINT = (40, 90, 255)
OAUTH_SUFFIX = "@hf"


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
    label; ``figure`` is the plotly 3D view of the current label (None when nothing is left)."""

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
    figure: Any
    history: list[HistoryRow]
    notes: list[tuple[str, str]]


def to_label(u: float, v: float, label_shape: tuple[int, int],
             display_shape: tuple[int, int]) -> tuple[int, int]:
    """A display pixel (column, row) as the label pixel under it (clamped to the label)."""
    (h, w), (dh, dw) = label_shape, display_shape[:2]
    col = min(max(round((u + 0.5) * w / dw - 0.5), 0), w - 1)
    row = min(max(round((v + 0.5) * h / dh - 0.5), 0), h - 1)
    return int(col), int(row)


def to_display(u: float, v: float, label_shape: tuple[int, int],
               display_shape: tuple[int, int]) -> tuple[int, int]:
    """A label pixel (column, row) as the display pixel that shows it."""
    (h, w), (dh, dw) = label_shape, display_shape[:2]
    return round((u + 0.5) * dw / w - 0.5), round((v + 0.5) * dh / h - 0.5)


# ------------------------------------------------------------------------------ users
def load_user(session: Session, username: str | None) -> User | None:
    """The stored user called ``username`` (None for no name or an unknown one)."""
    if not username:
        return None
    return get_user(session, username)


def user_role(ctx: ReviewContext, username: str | None) -> str | None:
    """The role of an active user, or None (unknown, disabled, not logged in)."""
    with ctx.session(readonly=True) as s:
        user = load_user(s, username)
        return user.role if user is not None and user.active else None


def oauth_user_name(hf_username: str) -> str:
    """The local user name of a Hugging Face account (``<name>@hf``)."""
    name = f"{hf_username.strip()}{OAUTH_SUFFIX}"
    if not NAME_RE.match(name):
        raise InputError(f"The Hugging Face name {hf_username!r} cannot be used as a user name.")
    return name


def ensure_oauth_user(ctx: ReviewContext, hf_username: str, role: str | Role = Role.VIEWER,
                      admin: bool = False) -> str:
    """The local user of a Hugging Face login, created the first time with ``role`` (or admin
    when ``admin``: the name is in ``DEPTHWEB_ADMINS``); its password is a random secret
    nobody knows. A listed admin whose account exists with a lower role is promoted (the
    setting is the operator's word); nobody is ever demoted here."""
    name = oauth_user_name(hf_username)
    wanted = Role.ADMIN if admin else Role(role)
    try:
        with ctx.session() as s:
            user = get_user(s, name)
            if user is None:
                create_user(session=s, actor=SYSTEM, name=name,
                            password=secrets.token_urlsafe(32), role=wanted)
                log.info("created %s %s for a Hugging Face login", wanted.value, name)
            elif admin and user.role != Role.ADMIN and user.active:
                update_user(session=s, actor=SYSTEM, name=name, role=Role.ADMIN)
                log.info("promoted %s to admin (DEPTHWEB_ADMINS)", name)
    except IntegrityError:  # created by a concurrent request
        log.debug("user %s was created concurrently", name)
    return name


# ------------------------------------------------------------------------------ pages
def _label_result(depth: np.ndarray, label: Label, model: str) -> DepthResult:
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


def _pictures(rgb: np.ndarray, label: Label, teacher: Label, model: str, title: str) -> tuple:
    """(photo, teacher picture, label picture, figure) for a label of shape (H, W)."""
    import cv2

    h, w = label.depth.shape
    if rgb.shape[:2] != (h, w):
        rgb = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)
    photo = visuals.downscale(rgb, DISPLAY_MAX_SIDE)
    teacher_colour = visuals.depth_preview(_label_result(teacher.depth, teacher, model))
    label_colour = visuals.depth_preview(_label_result(label.depth, label, model))
    label_colour = tint(tint(label_colour, label.far_mask, FAR_TINT), label.ignore_mask,
                        IGNORE_TINT)
    shown = np.where(label.ignore_mask, np.float32(np.nan), label.depth)
    result = _label_result(shown, label, model)
    figure = visuals.mesh_figure(visuals.shape_depth(result), rgb, result, title)
    return (photo, visuals.downscale(teacher_colour, DISPLAY_MAX_SIDE),
            visuals.downscale(label_colour, DISPLAY_MAX_SIDE), figure)


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
        return f"{len(p.get('pairs') or [])} pair(s)"
    if rev.action == "adjudicate":
        return " · ".join(x for x in (str(p.get("decision", "")), p.get("note", "")) if x)
    if rev.action == "mask":
        return f"mode {p.get('mode', 'union')}"
    return ""


def _history(session: Session, task_id: int) -> tuple[list[HistoryRow], list[tuple[str, str]]]:
    rows, notes = [], []
    for rev in task_history(session, task_id):
        author = rev.author.name if rev.author is not None else "?"
        rows.append(HistoryRow(rev.task_version, rev.created_at.strftime("%Y-%m-%d %H:%M UTC"),
                               author, rev.action, _details(rev)))
        text = (rev.payload or {}).get("text" if rev.action == "note" else "note")
        if text:
            notes.append((author, str(text)))
    return rows, notes


def _page(session: Session, ctx: ReviewContext, task_id: int) -> TaskPage:
    view = load_task_view(session, task_id, store=ctx.store)
    task = get_task(session, task_id)
    pred = task.prediction
    label = view.label
    raw = teacher_map(ctx.store, pred)
    teacher = Label(raw.depth, raw.kind, raw.ignore, raw.far, "pseudo", label.intrinsics,
                    pred.id, task_id)
    title = f"Task {task_id}: current label ({label.source}, {label.kind})"
    photo, teacher_pic, label_pic, figure = _pictures(view.rgb, label, teacher, pred.model,
                                                      title)
    history, notes = _history(session, task_id)
    return TaskPage(
        task_id=task.id, version=task.version, status=task.status,
        priority=float(task.priority), uncertainty=pred.uncertainty,
        image_name=view.image_name, teacher=pred.model, teacher_weights=pred.weights,
        kind=str(label.kind), source=label.source, n_corrections=label.n_corrections,
        is_gold=bool(task.is_gold), assignee=task.assignee.name if task.assignee else None,
        label_shape=(int(label.depth.shape[0]), int(label.depth.shape[1])), photo=photo,
        teacher_picture=teacher_pic, label_picture=label_pic, figure=figure,
        history=history, notes=notes,
    )


def next_page(
    ctx: ReviewContext, username: str | None, *, dataset: str | None = None,
    gold_every: int = 10,
) -> TaskPage | None:
    """Claim the highest-priority task the user has not reviewed (their own open claim first)
    and return its page; None when the queue has nothing for them. Reviewers and admins."""
    with ctx.session() as s:
        user = load_user(s, username)
        dataset_id = require_dataset(s, dataset).id if dataset else None
        task = next_task(session=s, user=user, dataset_id=dataset_id, gold_every=gold_every)
        task_id = task.id if task is not None else None
    if task_id is None:
        return None
    return open_page(ctx, username, task_id)


def open_page(ctx: ReviewContext, username: str | None, task_id: int) -> TaskPage:
    """The page of one task (any active user may look; nothing is claimed)."""
    with ctx.session(readonly=True) as s:
        require_role(load_user(s, username), *[r.value for r in Role])
        return _page(s, ctx, int(task_id))


# ------------------------------------------------------------------------------ saves
def approve(
    ctx: ReviewContext, username: str | None, task_id: int, expected_version: int,
    note: str = "",
) -> int:
    """Approve the task's current label; returns the new task version."""
    with ctx.session() as s:
        task = approve_task(session=s, task_id=int(task_id), user=load_user(s, username),
                            expected_version=int(expected_version), note=note or "")
        return task.version


def reject(
    ctx: ReviewContext, username: str | None, task_id: int, expected_version: int,
    reasons: Sequence[str], note: str = "",
) -> int:
    """Reject the task's current label with reason tags; returns the new task version."""
    with ctx.session() as s:
        task = reject_task(session=s, task_id=int(task_id), user=load_user(s, username),
                           expected_version=int(expected_version), reasons=list(reasons or []),
                           note=note or "")
        return task.version


def save_note(
    ctx: ReviewContext, username: str | None, task_id: int, expected_version: int, text: str
) -> int:
    """A free-text note (stored as typed); returns the new task version."""
    with ctx.session() as s:
        rev = add_note(session=s, task_id=int(task_id), user=load_user(s, username),
                       expected_version=int(expected_version), text=text or "")
        return rev.task_version


def _correct(ctx: ReviewContext, username: str | None, task_id: int, expected_version: int,
             action: Action, payload: Mapping[str, Any] | None = None,
             region: np.ndarray | None = None) -> int:
    with ctx.session(readonly=True) as s:
        user = load_user(s, username)
    # The role is checked (again) by the repository in the write transaction; checking here
    # first means a viewer's region is never even written to the blob store.
    require_role(user, Role.ADMIN, Role.REVIEWER)
    result = save_correction(ctx, task_id=int(task_id), user=user,
                             expected_version=int(expected_version), action=action,
                             payload=payload, region=region)
    return result.task_version


def region_from_layers(layers: Sequence[np.ndarray] | None) -> np.ndarray | None:
    """Union of the painted pixels of brush layers ((h, w, 4) RGBA: alpha > 0; (h, w, 3) or
    (h, w): any non-zero value) as bool (h, w); None when nothing was painted."""
    region = None
    for layer in layers or []:
        arr = np.asarray(layer)
        if arr.ndim == 3 and arr.shape[2] == 4:
            painted = arr[..., 3] > 0
        elif arr.ndim == 3:
            painted = arr.any(axis=2)
        elif arr.ndim == 2:
            painted = arr > 0
        else:
            continue
        region = painted if region is None or region.shape != painted.shape else region | painted
    return region if region is not None and region.any() else None


def fit_region(region: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A painted bool region (any size) resized (nearest) to the label's (H, W)."""
    import cv2

    h, w = shape
    if region.shape == (h, w):
        return region.astype(bool)
    return cv2.resize(region.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0


def _label_shape(ctx: ReviewContext, task_id: int) -> tuple[int, int]:
    with ctx.session(readonly=True) as s:
        shape = get_task(s, int(task_id)).prediction.depth_blob.shape
    return int(shape[0]), int(shape[1])


def save_region(
    ctx: ReviewContext, username: str | None, task_id: int, expected_version: int,
    region: np.ndarray | None, kind: str, *, mode: str = "union",
) -> int:
    """``kind``: ``mask`` (ignore mask, ``mode`` union/replace/subtract), ``plane`` (fit a plane
    to the region's border) or ``far``. ``region``: painted bool (h, w), any size (resized to
    the label). Returns the new task version."""
    if kind not in REGION_ACTIONS:
        raise InputError(f"Unknown region action {kind!r}; use mask, plane or far.")
    if region is None or not np.asarray(region).any():
        raise InputError("Nothing is painted; paint the region with the brush first.")
    region = fit_region(np.asarray(region), _label_shape(ctx, task_id))
    payload = {"mode": mode} if kind == "mask" else {}
    return _correct(ctx, username, task_id, expected_version, REGION_ACTIONS[kind], payload,
                    region)


def _number_rows(rows: Sequence[Sequence[Any]] | None, width: int, what: str) -> list[list]:
    out = []
    for row in rows or []:
        cells = list(row)[:width] if row is not None else []
        if all(c in (None, "") for c in cells):
            continue
        try:
            values = [float(c) for c in cells]
        except (TypeError, ValueError) as exc:
            raise InputError(f"The {what} row {cells!r} is not all numbers; fix it.") from exc
        if len(values) != width or not all(np.isfinite(values)):
            raise InputError(f"The {what} row {cells!r} needs {width} numbers; fix it.")
        out.append(values)
    return out


def save_anchors(
    ctx: ReviewContext, username: str | None, task_id: int, expected_version: int,
    rows: Sequence[Sequence[Any]] | None,
) -> int:
    """Scale anchors ``[column, row, true depth in metres]`` (label pixels): the label is
    re-fitted (scale and shift) and becomes metric. Returns the new task version."""
    anchors = _number_rows(rows, 3, "anchor")
    if not anchors:
        raise InputError("Add at least one scale anchor: click the photo, then type its depth.")
    if any(d <= 0 for _, _, d in anchors):
        raise InputError("Anchor depths must be positive distances in metres.")
    return _correct(ctx, username, task_id, expected_version, Action.ANCHORS,
                    {"anchors": anchors})


def save_pairs(
    ctx: ReviewContext, username: str | None, task_id: int, expected_version: int,
    rows: Sequence[Sequence[Any]] | None,
) -> int:
    """Ordinal pairs ``[closer column, row, farther column, row]`` (label pixels): "A is closer
    than B". Returns the new task version."""
    pairs = _number_rows(rows, 4, "pair")
    if not pairs:
        raise InputError("Add at least one pair: click the closer point A, then the farther B.")
    return _correct(ctx, username, task_id, expected_version, Action.ORDINAL, {"pairs": pairs})
