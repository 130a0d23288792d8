"""Review actions on one task: approve, reject, corrections, notes, adjudication.

Every action is one version-guarded ``UPDATE`` of the task (stale saves raise
:class:`StaleRevisionError` and write nothing) plus one appended revision whose parent is the
task's previous head. With ``required_reviews = N`` a task is decided when N active reviews are
in: unanimous approve -> approved, unanimous reject -> rejected, otherwise submitted (awaiting
admin adjudication). A correction changes the label, so earlier reviews stop counting.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

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
from depthweb.store.repo._common import (
    TaskLike,
    append_revision,
    bump_row,
    bump_task,
    check_claim,
    claim_guard,
    load_for_update,
    read_for_save,
    try_bump,
)
from depthweb.store.repo._statements import (
    ACTIVE_DECISIONS,
    DEACTIVATE_OWN_REVIEW,
    DEACTIVATE_REVIEWS,
    INSERT_REVIEW,
    sync_held,
)
from depthweb.store.repo.branches import branch_labels_agree, branch_of, is_branchy
from depthweb.store.sqlutil import connection

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
    rows = connection(session).execute(ACTIVE_DECISIONS, {"task_id": task_id}).all()
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
    now = utcnow()
    task, person = read_for_save(session, task_id, expected_version, person, *REVIEW_ROLES)
    check_claim(task, person, now=now)
    if task.status == TaskStatus.BROKEN:
        raise InvalidActionError(f"Task {task_id} is set aside as broken; open the next task.")
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
        status = consensus([d for _, d in decided] + [decision], task.required_reviews)
        if status == TaskStatus.APPROVED and is_branchy(task):
            # independent branches: approved only when the approvers approved the same label
            approvers = [r for r, _ in decided] + [person.id]
            if not branch_labels_agree(session, task_id, approvers):
                status = TaskStatus.SUBMITTED
        values["status"] = status
    done = bump_task(session, task_id=task_id, expected_version=expected_version,
                     unclaimed_for=claim_guard(person), now=now, **values)
    payload: dict[str, Any] = {"reasons": reasons}
    if note:
        payload["note"] = note
    rev = append_revision(
        session, done, author_id=person.id, action=decision.value, payload=payload,
        branch_id=branch_of(done, person),
    )
    connection(session).execute(INSERT_REVIEW, {
        "task_id": task_id, "reviewer_id": person.id, "revision_id": rev.id,
        "decision": decision.value, "reasons": reasons, "active": True, "created_at": now})
    return done


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
    label: tuple[BlobRef, BlobRef] | None = None,
    rules_version: int = 1,
) -> Revision:
    """Append a label correction (mask, anchors, ordinal, plane_fill, far_fill).

    Region actions carry their (H, W) mask as ``blob``; ``label`` is the (depth, flags) pair of
    the label the correction produced; both already written with ``store`` (file first, row
    second). On crowd and gold tasks a reviewer's correction goes to their own branch
    (:mod:`depthweb.store.repo.branches`) and only their own review stops counting; otherwise
    earlier reviews stop counting and the task goes (back) to in_review. Decided tasks can only
    be corrected by an admin; a task claimed by someone else is refused.
    """
    person = require_person(user, *REVIEW_ROLES)
    action = Action(action)
    payload = dict(payload or {})
    _validate_correction(action, payload, blob)
    now = utcnow()
    task, person = read_for_save(session, task_id, expected_version, person, *REVIEW_ROLES)
    _check_writable(task, person, now)
    for ref in [r for r in (blob, *(label or ())) if r is not None]:
        if store is None:
            raise InputError("Pass the blob store that holds the correction's files.")
        store.register(session, ref)
    branch = branch_of(task, person)
    task = _touch(session, task, person, expected_version, now)
    _deactivate_reviews(session, task_id, None if branch is None else person.id)
    return append_revision(
        session,
        task,
        author_id=person.id,
        action=action.value,
        payload=payload,
        blob_sha256=blob.sha256 if blob else None,
        label=label,
        rules_version=rules_version,
        branch_id=branch,
    )


def _check_writable(task: TaskLike, person: Any, now: datetime) -> None:
    """Refuse label changes on broken, decided or someone else's claimed tasks."""
    check_claim(task, person, now=now)
    if task.status == TaskStatus.BROKEN:
        raise InvalidActionError(f"Task {task.id} is set aside as broken; open the next task.")
    locked = not task.is_gold and (
        task.status in FINAL_STATUSES or task.status == TaskStatus.SUBMITTED)
    if locked and person.role != Role.ADMIN:
        raise InvalidActionError(
            f"Task {task.id} is {task.status}; only an admin can change its label."
        )


def _touch(session: Session, task: TaskLike, person: Any, expected_version: int,
           now: datetime) -> TaskLike:
    """Bump the version, keep (or take: reviewers) the claim, and reopen a non-gold task."""
    new_status = task.status if task.is_gold else TaskStatus.IN_REVIEW.value
    claim = {} if person.role == Role.ADMIN else {"assignee_id": person.id, "claimed_at": now}
    return bump_row(session, task_id=task.id, expected_version=expected_version,
                    unclaimed_for=claim_guard(person), now=now, status=new_status, **claim)


def _deactivate_reviews(session: Session, task_id: int, reviewer_id: int | None) -> None:
    """Reviews stop counting when the label they approved changed (one reviewer's on a branch)."""
    match: dict[str, Any] = {"task_id": task_id, "active": True}
    if reviewer_id is None:
        connection(session).execute(DEACTIVATE_REVIEWS, {"of_task": task_id})
    else:
        connection(session).execute(DEACTIVATE_OWN_REVIEW,
                                    {"of_task": task_id, "reviewer": reviewer_id})
        match["reviewer_id"] = reviewer_id
    sync_held(session, Review, match, {"active": False})


def undo_correction(
    *,
    session: Session,
    task_id: int,
    user: Actor,
    expected_version: int,
    undoes: int,
    label: tuple[BlobRef, BlobRef] | None,
    payload: dict[str, Any] | None = None,
) -> Revision:
    """Revert the user's own correction ``undoes`` (a new ``undo`` revision; history kept).

    ``label``: the label in effect before it (None = the teacher's prediction); the service
    works out which correction is the user's last and what it restores.
    """
    person = require_person(user, *REVIEW_ROLES)
    now = utcnow()
    task, person = read_for_save(session, task_id, expected_version, person, *REVIEW_ROLES)
    _check_writable(task, person, now)
    target = session.get(Revision, undoes)
    if target is None or target.task_id != task_id or target.author_id != person.id:
        raise InvalidActionError("You can only undo your own last correction of this task.")
    branch = branch_of(task, person)
    task = _touch(session, task, person, expected_version, now)
    _deactivate_reviews(session, task_id, None if branch is None else person.id)
    return append_revision(
        session, task, author_id=person.id, action=Action.UNDO.value,
        payload={**(payload or {}), "undoes": int(undoes)}, label=label,
        rules_version=target.rules_version, branch_id=branch,
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
    now = utcnow()
    task = try_bump(session, task_id=task_id, expected_version=expected_version, person=person,
                    now=now)
    if task is None:  # a check failed, or the saver is an admin or changed: one by one
        task, person = read_for_save(session, task_id, expected_version, person, *REVIEW_ROLES)
        check_claim(task, person, now=now)
        task = bump_row(session, task_id=task_id, expected_version=expected_version,
                        unclaimed_for=claim_guard(person), now=now)
    branch = branch_of(task, person)
    return append_revision(
        session, task, author_id=person.id, action=Action.NOTE.value, payload={"text": text},
        branch_id=branch,
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
