"""Review actions on one task: approve, reject, corrections, notes, adjudication.

Every action is one version-guarded ``UPDATE`` of the task (stale saves raise
:class:`StaleRevisionError` and write nothing) plus one appended revision whose parent is the
task's previous head. With ``required_reviews = N`` a task is decided when N active reviews are
in: unanimous approve -> approved, unanimous reject -> rejected, otherwise submitted (awaiting
admin adjudication). A correction changes the label, so earlier reviews stop counting.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from depthweb.errors import InputError
from depthweb.store.auth import Actor, require_person
from depthweb.store.blobs import BlobRef, BlobStore
from depthweb.store.errors import InvalidActionError
from depthweb.store.models import (
    CORRECTION_ACTIONS,
    FINAL_STATUSES,
    Action,
    Decision,
    Review,
    Revision,
    Role,
    Task,
    TaskStatus,
    utcnow,
)
from depthweb.store.repo._common import append_revision, bump_task, load_for_update

REVIEW_ROLES = (Role.ADMIN, Role.REVIEWER)
REGION_ACTIONS = frozenset({Action.MASK, Action.PLANE_FILL, Action.FAR_FILL})
MAX_NOTE_CHARS = 4000


def consensus(decisions: Sequence[str], required: int) -> TaskStatus:
    """Status after ``decisions`` (active reviews) with ``required`` reviews per task."""
    if len(decisions) < required:
        return TaskStatus.IN_REVIEW
    if all(d == Decision.APPROVE for d in decisions):
        return TaskStatus.APPROVED
    if all(d == Decision.REJECT for d in decisions):
        return TaskStatus.REJECTED
    return TaskStatus.SUBMITTED


def active_decisions(session: Session, task_id: int) -> list[tuple[int, str]]:
    """(reviewer id, decision) of the reviews that still count for ``task_id``."""
    rows = session.execute(
        select(Review.reviewer_id, Review.decision)
        .where(Review.task_id == task_id, Review.active)
        .order_by(Review.id)
    ).all()
    return [(int(r), str(d)) for r, d in rows]


def _clean_reasons(reasons: Sequence[str]) -> list[str]:
    out = [str(r).strip() for r in reasons if str(r).strip()]
    if any(len(r) > 64 for r in out):
        raise InputError("Reason tags must be at most 64 characters each.")
    return out


def submit_review(
    *,
    session: Session,
    task_id: int,
    user: Actor,
    expected_version: int,
    decision: Decision | str,
    reasons: Sequence[str] = (),
    note: str = "",
) -> Task:
    """Record one reviewer's decision; sets the status when the task's N reviews are in.

    Gold tasks keep their status: their reviews only measure the reviewer.
    """
    person = require_person(user, *REVIEW_ROLES)
    decision = Decision(decision)
    reasons = _clean_reasons(reasons)
    if len(note or "") > MAX_NOTE_CHARS:
        raise InputError(f"Notes are limited to {MAX_NOTE_CHARS} characters.")
    if decision is Decision.REJECT and not reasons:
        raise InputError("Pick at least one reason tag when rejecting a label.")
    task = load_for_update(session, task_id, expected_version)
    if not task.is_gold and task.status == TaskStatus.SUBMITTED:
        raise InvalidActionError(
            f"Task {task_id} already has its reviews and awaits an admin's adjudication."
        )
    if not task.is_gold and task.status in FINAL_STATUSES:
        raise InvalidActionError(
            f"Task {task_id} is already {task.status}; an admin can adjudicate it again."
        )
    decided = active_decisions(session, task_id)
    if any(reviewer == person.id for reviewer, _ in decided):
        raise InvalidActionError(f"You already reviewed task {task_id}; open the next task.")
    values: dict[str, Any] = {"assignee_id": None, "claimed_at": None}
    if not task.is_gold:
        values["status"] = consensus([d for _, d in decided] + [decision], task.required_reviews)
    task = bump_task(session, task_id=task_id, expected_version=expected_version, **values)
    payload: dict[str, Any] = {"reasons": reasons}
    if note:
        payload["note"] = note
    rev = append_revision(
        session, task, author_id=person.id, action=decision.value, payload=payload
    )
    session.add(
        Review(
            task_id=task_id,
            reviewer_id=person.id,
            revision_id=rev.id,
            decision=decision.value,
            reasons=reasons,
        )
    )
    session.flush()
    return task


def approve_task(
    *, session: Session, task_id: int, user: Actor, expected_version: int, note: str = ""
) -> Task:
    """Approve the current label (teacher prediction + corrections)."""
    return submit_review(
        session=session,
        task_id=task_id,
        user=user,
        expected_version=expected_version,
        decision=Decision.APPROVE,
        note=note,
    )


def reject_task(
    *,
    session: Session,
    task_id: int,
    user: Actor,
    expected_version: int,
    reasons: Sequence[str],
    note: str = "",
) -> Task:
    """Reject the current label with reason tags (e.g. "sky", "wrong scale")."""
    return submit_review(
        session=session,
        task_id=task_id,
        user=user,
        expected_version=expected_version,
        decision=Decision.REJECT,
        reasons=reasons,
        note=note,
    )


def _validate_correction(action: Action, payload: dict[str, Any], blob: BlobRef | None) -> None:
    if action not in CORRECTION_ACTIONS:
        raise InputError(f"{action} is not a label correction.")
    if action in REGION_ACTIONS:
        if blob is None or blob.shape is None or len(blob.shape) != 2:
            raise InputError(f"A {action} correction needs a painted (H, W) region; paint one.")
    elif action is Action.ANCHORS and not payload.get("anchors"):
        raise InputError("Add at least one scale anchor (a pixel and its depth) before saving.")
    elif action is Action.ORDINAL and not payload.get("pairs"):
        raise InputError("Add at least one 'A is closer than B' pair before saving.")


def add_correction(
    *,
    session: Session,
    task_id: int,
    user: Actor,
    expected_version: int,
    action: Action | str,
    payload: dict[str, Any] | None = None,
    blob: BlobRef | None = None,
    store: BlobStore | None = None,
) -> Revision:
    """Append a label correction (mask, anchors, ordinal, plane_fill, far_fill).

    Region actions carry their (H, W) mask as ``blob``, already written with ``store``
    (file first, row second). Earlier reviews stop counting; the task goes (back) to
    in_review. Decided or gold tasks can only be corrected by an admin.
    """
    person = require_person(user, *REVIEW_ROLES)
    action = Action(action)
    payload = dict(payload or {})
    _validate_correction(action, payload, blob)
    task = load_for_update(session, task_id, expected_version)
    locked = task.is_gold or task.status in FINAL_STATUSES or task.status == TaskStatus.SUBMITTED
    if locked and person.role != Role.ADMIN:
        raise InvalidActionError(
            f"Task {task_id} is {'a gold task' if task.is_gold else task.status}; only an admin "
            "can change its label."
        )
    if blob is not None:
        if store is None:
            raise InputError("Pass the blob store that holds the correction's mask.")
        store.register(session, blob)
    new_status = task.status if task.is_gold else TaskStatus.IN_REVIEW
    task = bump_task(
        session,
        task_id=task_id,
        expected_version=expected_version,
        status=new_status,
        assignee_id=person.id,
        claimed_at=utcnow(),
    )
    session.execute(
        update(Review).where(Review.task_id == task_id, Review.active).values(active=False)
    )
    return append_revision(
        session,
        task,
        author_id=person.id,
        action=action.value,
        payload=payload,
        blob_sha256=blob.sha256 if blob else None,
    )


def add_note(
    *, session: Session, task_id: int, user: Actor, expected_version: int, text: str
) -> Revision:
    """A free-text note on the task (does not change the label or the status)."""
    person = require_person(user, *REVIEW_ROLES)
    text = text.strip()
    if not text:
        raise InputError("The note is empty; write something before saving.")
    if len(text) > MAX_NOTE_CHARS:
        raise InputError(f"Notes are limited to {MAX_NOTE_CHARS} characters.")
    load_for_update(session, task_id, expected_version)
    task = bump_task(session, task_id=task_id, expected_version=expected_version)
    return append_revision(
        session, task, author_id=person.id, action=Action.NOTE.value, payload={"text": text}
    )


def adjudicate(
    *,
    session: Session,
    task_id: int,
    user: Actor,
    expected_version: int,
    decision: Decision | str,
    note: str = "",
) -> Task:
    """Admin's final decision (typically on a submitted task whose reviews disagree)."""
    person = require_person(user, Role.ADMIN)
    decision = Decision(decision)
    if len(note or "") > MAX_NOTE_CHARS:
        raise InputError(f"Notes are limited to {MAX_NOTE_CHARS} characters.")
    task = load_for_update(session, task_id, expected_version)
    if task.is_gold:
        raise InvalidActionError(f"Task {task_id} is a gold task; set its gold answer instead.")
    status = TaskStatus.APPROVED if decision is Decision.APPROVE else TaskStatus.REJECTED
    task = bump_task(
        session,
        task_id=task_id,
        expected_version=expected_version,
        status=status,
        assignee_id=None,
        claimed_at=None,
    )
    append_revision(
        session,
        task,
        author_id=person.id,
        action=Action.ADJUDICATE.value,
        payload={"decision": decision.value, "note": note or ""},
    )
    return task
