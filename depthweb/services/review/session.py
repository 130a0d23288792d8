"""Review use cases behind the Review tab: the next task for a user, the task page, and every
save (approve, reject, mask, anchors, ordinal pairs, region fill, note, undo) against an
expected task version.

Every function takes the user *name* as the web server authenticated it (``gr.Request.username``
or the name mapped from a Hugging Face login) and loads that user from the database inside the
call, so a disabled or demoted account loses its rights at once. Each action is one service call
with one write transaction, in which the repository checks the role, the claim and the version
once (reviewers and admins write, viewers only look; no name = not logged in:
:class:`~depthweb.store.PermissionDeniedError`); a stale save raises
:class:`~depthweb.store.StaleRevisionError` and writes nothing. The ``*_page`` variants return
what the page shows next (:class:`Outcome`): the same task after a correction, the user's next
task after a decision.

Pictures in a :class:`TaskPage` are at *display* size (longer side at most
:data:`DISPLAY_MAX_SIDE`); points and regions are stored in *label* pixels: use
:func:`to_label` / :func:`to_display` to go between the two. A task whose files are missing or
corrupt is set aside (status ``broken``) and the queue moves on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from depthweb.errors import InputError
from depthweb.services.review import actions
from depthweb.services.review.access import load_user
from depthweb.services.review.context import ReviewContext
from depthweb.services.review.page import (
    DISPLAY_MAX_SIDE,
    HistoryRow,
    TaskPage,
    label_figure,
    page_data,
    render,
)
from depthweb.store import Role, StaleRevisionError, require_role
from depthweb.store.errors import BrokenTaskError
from depthweb.store.models import Action
from depthweb.store.repo import (
    add_note,
    approve_task,
    get_task,
    next_task,
    reject_task,
    require_dataset,
)

log = logging.getLogger(__name__)

REASON_TAGS = ("sky", "glass", "mirror", "people", "blur", "wrong scale", "other")
"""Reason tags offered when rejecting a label."""
REGION_ACTIONS = {"mask": Action.MASK, "plane": Action.PLANE_FILL, "far": Action.FAR_FILL}
MAX_BROKEN_SKIPS = 20
__all__ = ["DISPLAY_MAX_SIDE", "HistoryRow", "Outcome", "StaleRevisionError", "TaskPage"]


@dataclass(frozen=True)
class Outcome:
    """What an action produced: the task ``version`` it saved, and the ``page`` to show next
    (None: the queue has nothing more for the user); ``note`` says why a task was skipped."""

    version: int
    page: TaskPage | None
    note: str = ""


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


# ------------------------------------------------------------------------------ pages
def _show(ctx: ReviewContext, username: str | None, task_id: int) -> TaskPage:
    """Read and render one task's page for ``username`` (BrokenTaskError: set aside)."""
    with actions.broken_guard(ctx, task_id), ctx.session(readonly=True) as s:
        viewer = load_user(s, username)
        require_role(viewer, *[r.value for r in Role])
        data = page_data(ctx, s, get_task(s, int(task_id)), viewer)
    with actions.broken_guard(ctx, task_id):
        return render(ctx, data)


def _claim_next(s: Session, username: str | None, dataset: str | None,
                gold_every: int) -> int | None:
    user = load_user(s, username)
    dataset_id = require_dataset(s, dataset).id if dataset else None
    task = next_task(session=s, user=user, dataset_id=dataset_id, gold_every=gold_every)
    return task.id if task is not None else None


def _next_after(ctx: ReviewContext, username: str | None, first: int | None,
                dataset: str | None, gold_every: int) -> tuple[TaskPage | None, str]:
    """The page of the claimed task ``first``; a broken one is set aside and the next claimed
    (the queue never stops on a bad file)."""
    skipped: list[int] = []
    task_id = first
    for _ in range(MAX_BROKEN_SKIPS):
        if task_id is None:
            break
        try:
            page = _show(ctx, username, task_id)
            break
        except BrokenTaskError:
            skipped.append(task_id)
            with ctx.session() as s:
                task_id = _claim_next(s, username, dataset, gold_every)
    else:
        page = None
    if task_id is None:
        page = None
    note = (f"Task(s) {', '.join(map(str, skipped))} set aside: a file is missing or corrupt "
            "(an admin sees them as broken)." if skipped else "")
    return page, note


def next_page(
    ctx: ReviewContext, username: str | None, *, dataset: str | None = None,
    gold_every: int = 10,
) -> TaskPage | None:
    """Claim the highest-priority task the user has not reviewed (their own open claim first)
    and return its page; None when the queue has nothing for them. Reviewers and admins."""
    return next_outcome(ctx, username, dataset=dataset, gold_every=gold_every).page


def next_outcome(ctx: ReviewContext, username: str | None, *, dataset: str | None = None,
                 gold_every: int = 10) -> Outcome:
    """:func:`next_page` with the note on tasks set aside on the way."""
    with ctx.session() as s:
        first = _claim_next(s, username, dataset, gold_every)
    page, note = _next_after(ctx, username, first, dataset, gold_every)
    return Outcome(page.version if page else 0, page, note)


def open_page(ctx: ReviewContext, username: str | None, task_id: int) -> TaskPage:
    """The page of one task (any active user may look; nothing is claimed)."""
    return _show(ctx, username, int(task_id))


def figure_3d(ctx: ReviewContext, username: str | None, task_id: int) -> Any:
    """The plotly 3D view of the label the user sees on the task (built only when asked)."""
    with actions.broken_guard(ctx, task_id), ctx.session(readonly=True) as s:
        viewer = load_user(s, username)
        require_role(viewer, *[r.value for r in Role])
        data = page_data(ctx, s, get_task(s, int(task_id)), viewer)
    with actions.broken_guard(ctx, task_id):
        return label_figure(ctx, data)


# ------------------------------------------------------------------------------ decisions
def _decide(ctx: ReviewContext, username: str | None, save: Callable[[Session, Any], int],
            show_next: bool, dataset: str | None, gold_every: int) -> Outcome:
    """One write transaction: the save (role, claim and version checked once) and, with
    ``show_next``, the claim of the user's next task; then that task's page is read."""
    with ctx.session() as s:
        version = save(s, load_user(s, username))
        first = _claim_next(s, username, dataset, gold_every) if show_next else None
    if not show_next:
        return Outcome(version, None)
    page, note = _next_after(ctx, username, first, dataset, gold_every)
    return Outcome(version, page, note)


def approve_page(ctx: ReviewContext, username: str | None, task_id: int,
                 expected_version: int, note: str = "", *, dataset: str | None = None,
                 gold_every: int = 10) -> Outcome:
    """Approve the label the user sees and claim their next task (one transaction)."""
    return _decide(ctx, username, lambda s, u: approve_task(
        session=s, task_id=int(task_id), user=u, expected_version=int(expected_version),
        note=note or "").version, True, dataset, gold_every)


def reject_page(ctx: ReviewContext, username: str | None, task_id: int,
                expected_version: int, reasons: Sequence[str], note: str = "", *,
                dataset: str | None = None, gold_every: int = 10) -> Outcome:
    """Reject with reason tags and claim the user's next task (one transaction)."""
    return _decide(ctx, username, lambda s, u: reject_task(
        session=s, task_id=int(task_id), user=u, expected_version=int(expected_version),
        reasons=list(reasons or []), note=note or "").version, True, dataset, gold_every)


def approve(ctx: ReviewContext, username: str | None, task_id: int, expected_version: int,
            note: str = "") -> int:
    """Approve the task's current label; returns the new task version."""
    return _decide(ctx, username, lambda s, u: approve_task(
        session=s, task_id=int(task_id), user=u, expected_version=int(expected_version),
        note=note or "").version, False, None, 0).version


def reject(ctx: ReviewContext, username: str | None, task_id: int, expected_version: int,
           reasons: Sequence[str], note: str = "") -> int:
    """Reject the task's current label with reason tags; returns the new task version."""
    return _decide(ctx, username, lambda s, u: reject_task(
        session=s, task_id=int(task_id), user=u, expected_version=int(expected_version),
        reasons=list(reasons or []), note=note or "").version, False, None, 0).version


def save_note(ctx: ReviewContext, username: str | None, task_id: int, expected_version: int,
              text: str) -> int:
    """A free-text note (stored as typed); returns the new task version."""
    return _decide(ctx, username, lambda s, u: add_note(
        session=s, task_id=int(task_id), user=u, expected_version=int(expected_version),
        text=text or "").task_version, False, None, 0).version


def undo(ctx: ReviewContext, username: str | None, task_id: int, expected_version: int) -> int:
    """Revert the user's own last correction of the task; returns the new task version."""
    return actions.undo_last(ctx, task_id=int(task_id), user=username,
                             expected_version=int(expected_version))


def with_page(ctx: ReviewContext, username: str | None, task_id: int,
              save: Callable[[], int]) -> Outcome:
    """Run a save of ``task_id`` and return the task's page after it."""
    version = save()
    return Outcome(version, _show(ctx, username, int(task_id)))


# ------------------------------------------------------------------------------ saves
def _correct(ctx: ReviewContext, username: str | None, task_id: int, expected_version: int,
             action: Action, payload: dict[str, Any] | None = None,
             region: np.ndarray | None = None) -> int:
    result = actions.save_correction(ctx, task_id=int(task_id), user=username,
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
    rows: Sequence[Sequence[Any]] | None, *, tilt: bool = False,
) -> int:
    """Ordinal pairs ``[closer column, row, farther column, row]`` (label pixels): "A is closer
    than B", corrected locally around each closer point, or with ``tilt`` by the smallest
    global tilt of the whole label. Returns the new task version."""
    pairs = _number_rows(rows, 4, "pair")
    if not pairs:
        raise InputError("Add at least one pair: click the closer point A, then the farther B.")
    payload = {"pairs": pairs, "mode": "tilt" if tilt else "local"}
    return _correct(ctx, username, task_id, expected_version, Action.ORDINAL, payload)
