"""Shared pieces of the repository functions: loading, the version guard, revision append."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from depthweb.store.blobs import BlobRef
from depthweb.store.errors import ClaimedError, NotFoundError, StaleRevisionError
from depthweb.store.models import Revision, Role, Task, User, utcnow

DEFAULT_LEASE_S = 600.0
"""How long a claim lasts (seconds)."""


def get_task(session: Session, task_id: int) -> Task:
    """The task, freshly read (raises :class:`NotFoundError`)."""
    task = session.get(Task, task_id, populate_existing=True)
    if task is None:
        raise NotFoundError(f"There is no task {task_id}; it may have been deleted.")
    return task


def load_for_update(session: Session, task_id: int, expected_version: int) -> Task:
    """The task, refusing early when it is already past ``expected_version``."""
    task = get_task(session, task_id)
    if task.version != expected_version:
        raise StaleRevisionError(task_id, expected_version, task.version)
    return task


def claim_is_valid(task: Task, now: datetime, lease_s: float = DEFAULT_LEASE_S) -> bool:
    """Whether the task's claim (if any) is still within its lease at ``now``."""
    return (task.assignee_id is not None and task.claimed_at is not None
            and task.claimed_at >= now - timedelta(seconds=lease_s))


def check_claim(
    task: Task, person: User, *, now: datetime | None = None, lease_s: float = DEFAULT_LEASE_S
) -> None:
    """Refuse (:class:`ClaimedError`) a save by ``person`` on a task another reviewer holds a
    valid claim on (admins may save anyway)."""
    if task.assignee_id in (None, person.id) or person.role == Role.ADMIN:
        return
    if claim_is_valid(task, now or utcnow(), lease_s):
        when = task.claimed_at.strftime("%H:%M UTC") if task.claimed_at else "?"
        raise ClaimedError(task.id, when, round(lease_s / 60))


def bump_task(session: Session, *, task_id: int, expected_version: int, **values: Any) -> Task:
    """``UPDATE tasks SET <values>, version = version + 1 WHERE id = :id AND version = :expected``.

    Zero rows means someone else saved first: :class:`StaleRevisionError` is raised before
    anything is written (the caller's transaction rolls back). Returns the refreshed task.
    """
    stmt = (
        update(Task)
        .where(Task.id == task_id, Task.version == expected_version)
        .values(version=Task.version + 1, updated_at=utcnow(), **values)
        .returning(Task)
        .execution_options(synchronize_session=False, populate_existing=True)
    )
    task = session.scalars(stmt).one_or_none()
    if task is None:
        current = session.scalar(select(Task.version).where(Task.id == task_id))
        if current is None:
            raise NotFoundError(f"There is no task {task_id}; it may have been deleted.")
        raise StaleRevisionError(task_id, expected_version, current)
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
    task: Task,
    *,
    author_id: int,
    action: str,
    payload: dict[str, Any] | None = None,
    blob_sha256: str | None = None,
    label: tuple[BlobRef, BlobRef] | None = None,
    rules_version: int = 1,
    branch_id: int | None = None,
) -> Revision:
    """Append a revision after ``bump_task``: its parent is the task's previous head.

    ``label``: the (depth, flags) blobs of the label a label action produced (rows already
    registered); ``branch_id``: the reviewer's independent branch (crowd and gold tasks).
    """
    parent = head_revision(session, task.id)
    rev = Revision(
        task_id=task.id,
        parent_id=parent.id if parent is not None else None,
        task_version=task.version,
        author_id=author_id,
        action=str(action),
        payload=dict(payload or {}),
        blob_sha256=blob_sha256,
        rules_version=int(rules_version),
        label_blob_sha256=label[0].sha256 if label else None,
        flags_blob_sha256=label[1].sha256 if label else None,
        branch_id=branch_id,
    )
    session.add(rev)
    session.flush()
    return rev
