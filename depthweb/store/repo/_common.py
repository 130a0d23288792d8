"""Shared pieces of the repository functions: loading, the version guard, revision append.

The version bump and the revision append run prebuilt Core statements
(:mod:`depthweb.store.repo._statements`) and return ORM objects made from their rows, so a
save costs a few statement executions instead of ORM statement building and flushes.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Row
from sqlalchemy.orm import Session

from depthweb.store.auth import require_person
from depthweb.store.blobs import BlobRef
from depthweb.store.errors import ClaimedError, NotFoundError, StaleRevisionError
from depthweb.store.models import Revision, Role, Task, User, utcnow
from depthweb.store.repo._statements import (
    BUMP,
    BUMP_CHECKED,
    BUMP_UNCLAIMED,
    INSERT_REVISION,
    READ_TASK,
    TASK_VERSION,
    adopt,
)
from depthweb.store.sqlutil import connection

DEFAULT_LEASE_S = 600.0
"""How long a claim lasts (seconds)."""

TaskLike = Task | Row[Any]
"""A task as an ORM object or as a row of its columns (what the checks below read)."""


def _missing(task_id: int) -> NotFoundError:
    return NotFoundError(f"There is no task {task_id}; it may have been deleted.")


def get_task(session: Session, task_id: int) -> Task:
    """The task, freshly read (raises :class:`NotFoundError`)."""
    task = session.get(Task, task_id, populate_existing=True)
    if task is None:
        raise _missing(task_id)
    return task


def load_for_update(session: Session, task_id: int, expected_version: int) -> Task:
    """The task, refusing early when it is already past ``expected_version``."""
    task = get_task(session, task_id)
    if task.version != expected_version:
        raise StaleRevisionError(task_id, expected_version, task.version)
    return task


def read_for_save(
    session: Session, task_id: int, expected_version: int, person: User, *roles: str
) -> tuple[Row[Any], User]:
    """The task (a row) for a save's checks, refusing early when it is already past
    ``expected_version``, and the saver as the database has them in this transaction.

    ``person`` passed :func:`~depthweb.store.auth.require_person` already; when its stored role
    or active flag differs (the caller kept the object from an earlier session), the stored
    user is loaded and checked again with ``roles``, so a demoted or disabled user is refused
    and a changed role takes effect at once.
    """
    row = connection(session).execute(
        READ_TASK, {"task_id": task_id, "actor_id": person.id}).first()
    if row is None:
        raise _missing(task_id)
    if (row.actor_role, bool(row.actor_active)) != (person.role, bool(person.active)):
        person = require_person(session.get(User, person.id, populate_existing=True), *roles)
    if row.version != expected_version:
        raise StaleRevisionError(task_id, expected_version, row.version)
    return row, person


def claim_guard(person: User) -> User | None:
    """Whose claim a save must respect in its version bump: none for admins."""
    return None if person.role == Role.ADMIN else person


def claim_is_valid(task: TaskLike, now: datetime, lease_s: float = DEFAULT_LEASE_S) -> bool:
    """Whether the task's claim (if any) is still within its lease at ``now``."""
    return (task.assignee_id is not None and task.claimed_at is not None
            and task.claimed_at >= now - timedelta(seconds=lease_s))


def check_claim(
    task: TaskLike, person: User, *, now: datetime | None = None, lease_s: float = DEFAULT_LEASE_S
) -> None:
    """Refuse (:class:`ClaimedError`) a save by ``person`` on a task another reviewer holds a
    valid claim on (admins may save anyway)."""
    if task.assignee_id in (None, person.id) or person.role == Role.ADMIN:
        return
    if claim_is_valid(task, now or utcnow(), lease_s):
        when = task.claimed_at.strftime("%H:%M UTC") if task.claimed_at else "?"
        raise ClaimedError(task.id, when, round(lease_s / 60))


def bump_row(
    session: Session,
    *,
    task_id: int,
    expected_version: int,
    unclaimed_for: User | None = None,
    lease_s: float = DEFAULT_LEASE_S,
    now: datetime | None = None,
    **values: Any,
) -> Row[Any]:
    """``UPDATE tasks SET <values>, version = version + 1 WHERE id = :id AND version = :expected``
    (and, with ``unclaimed_for``, no valid claim of someone else's), returning the task's row.

    Zero rows means someone else saved (or claimed) first: :class:`StaleRevisionError` (or
    :class:`ClaimedError`) is raised and nothing is written. The task object the session holds,
    if any, is refreshed.
    """
    now = now or utcnow()
    params: dict[str, Any] = {"task_id": task_id, "expected": expected_version,
                              "updated_at": now, **values}
    stmt = BUMP
    if unclaimed_for is not None:
        stmt = BUMP_UNCLAIMED
        params.update(actor_id=unclaimed_for.id, stale_before=now - timedelta(seconds=lease_s))
    row = connection(session).execute(stmt, params).first()
    if row is None:
        current = connection(session).execute(TASK_VERSION, {"task_id": task_id}).first()
        if current is None:
            raise _missing(task_id)
        if current.version != expected_version:
            raise StaleRevisionError(task_id, expected_version, current.version)
        when = current.claimed_at.strftime("%H:%M UTC") if current.claimed_at else "?"
        raise ClaimedError(task_id, when, round(lease_s / 60))
    adopt(session, Task, row._mapping, create=False)
    return row


def try_bump(session: Session, *, task_id: int, expected_version: int, person: User,
             now: datetime, lease_s: float = DEFAULT_LEASE_S, **values: Any) -> Row[Any] | None:
    """:func:`bump_row` for a reviewer's save whose only checks are the version, the saver's
    stored role and active flag (as ``person`` has them) and the claim, folded into the
    ``UPDATE`` itself: the task's row, or None (nothing written) when any check fails. The
    caller then runs the checks one by one (:func:`read_for_save`, :func:`check_claim`,
    :func:`bump_row`) for the sentence that says which, or to save as the stored user."""
    if person.role == Role.ADMIN:
        return None  # admins skip the claim check: the plain path
    params: dict[str, Any] = {
        "task_id": task_id, "expected": expected_version, "updated_at": now, **values,
        "actor_id": person.id, "actor_role": person.role,
        "stale_before": now - timedelta(seconds=lease_s)}
    row = connection(session).execute(BUMP_CHECKED, params).first()
    if row is not None:
        adopt(session, Task, row._mapping, create=False)
    return row


def bump_task(session: Session, *, task_id: int, expected_version: int, **values: Any) -> Task:
    """:func:`bump_row` returning the refreshed task object (raises like it)."""
    row = bump_row(session, task_id=task_id, expected_version=expected_version, **values)
    task = adopt(session, Task, row._mapping)
    assert task is not None
    return task


def head_revision(session: Session, task_id: int) -> Revision | None:
    return session.scalar(
        select(Revision)
        .where(Revision.task_id == task_id)
        .order_by(Revision.task_version.desc())
        .limit(1)
    )


def append_revision(
    session: Session,
    task: TaskLike,
    *,
    author_id: int,
    action: str,
    payload: dict[str, Any] | None = None,
    blob_sha256: str | None = None,
    label: tuple[BlobRef, BlobRef] | None = None,
    rules_version: int = 1,
    branch_id: int | None = None,
) -> Revision:
    """Append a revision after ``bump_task``: its parent is the task's previous head (read by
    the ``INSERT`` itself).

    ``label``: the (depth, flags) blobs of the label a label action produced (rows already
    registered); ``branch_id``: the reviewer's independent branch (crowd and gold tasks).
    """
    values: dict[str, Any] = {
        "task_id": task.id,
        "task_version": task.version,
        "author_id": author_id,
        "action": str(action),
        "payload": dict(payload or {}),
        "blob_sha256": blob_sha256,
        "rules_version": int(rules_version),
        "label_blob_sha256": label[0].sha256 if label else None,
        "flags_blob_sha256": label[1].sha256 if label else None,
        "branch_id": branch_id,
        "created_at": utcnow(),
    }
    row = connection(session).execute(INSERT_REVISION, {**values, "head_of": task.id}).one()
    rev = adopt(session, Revision, {**values, "id": row.id, "parent_id": row.parent_id})
    assert rev is not None
    return rev
