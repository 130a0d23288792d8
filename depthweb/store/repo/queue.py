"""The review queue: claiming tasks, the next task for a reviewer (with gold tasks mixed in),
and the N-reviews-per-task setting.

A claim is a lease (``lease_s``): while it lasts, :func:`next_task` hands the task to nobody
else and saves by anyone else are refused (:class:`~depthweb.store.errors.ClaimedError`), so
reviewers work on different tasks instead of racing each other on the top one. A claim does not
change the task's version (the label did not change, so the claimer's open page stays
current); it is taken with one guarded ``UPDATE`` (free, own, or lease run out). Submitting a
review releases the claim. Broken tasks (a file missing or corrupt) are never handed out.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, exists, func, or_, select, update
from sqlalchemy.orm import Session

from depthweb.errors import InputError
from depthweb.store.auth import Actor, require_person, require_role
from depthweb.store.errors import (
    ClaimedError,
    InvalidActionError,
    NotFoundError,
    StaleRevisionError,
)
from depthweb.store.models import Dataset, Review, Role, Task, TaskStatus, User, utcnow
from depthweb.store.repo._common import DEFAULT_LEASE_S, bump_task, get_task, load_for_update
from depthweb.store.repo.review import REVIEW_ROLES, active_decisions, consensus

OPEN_STATUSES = (TaskStatus.NEW.value, TaskStatus.IN_REVIEW.value)
CANDIDATES = 20
__all__ = ["DEFAULT_LEASE_S", "claim_task", "mark_broken", "next_task", "release_task"]


def claim_task(
    *,
    session: Session,
    task_id: int,
    user: Actor,
    expected_version: int | None = None,
    now: datetime | None = None,
    lease_s: float = DEFAULT_LEASE_S,
) -> Task:
    """Assign the task to ``user`` for a lease (the version stays); a new (non-gold) task
    becomes in_review. Refused when someone else holds a valid claim, the task is decided or
    broken, or (with ``expected_version``) it changed since the user saw it."""
    person = require_person(user, *REVIEW_ROLES)
    now = now or utcnow()
    task = get_task(session, task_id)
    if expected_version is not None and task.version != expected_version:
        raise StaleRevisionError(task_id, expected_version, task.version)
    if task.status == TaskStatus.BROKEN or (
            not task.is_gold and task.status not in OPEN_STATUSES):
        raise InvalidActionError(f"Task {task_id} is {task.status}; it cannot be claimed.")
    status = (TaskStatus.IN_REVIEW.value
              if task.status == TaskStatus.NEW and not task.is_gold else task.status)
    stale_before = now - timedelta(seconds=lease_s)
    stmt = (update(Task)
            .where(Task.id == task_id, Task.version == task.version,
                   or_(Task.assignee_id.is_(None), Task.assignee_id == person.id,
                       Task.claimed_at < stale_before))
            .values(assignee_id=person.id, claimed_at=now, status=status)
            .returning(Task)
            .execution_options(synchronize_session=False, populate_existing=True))
    claimed = session.scalars(stmt).one_or_none()
    if claimed is None:
        fresh = get_task(session, task_id)
        if fresh.version != task.version:
            raise StaleRevisionError(task_id, task.version, fresh.version)
        when = fresh.claimed_at.strftime("%H:%M UTC") if fresh.claimed_at else "?"
        raise ClaimedError(task_id, when, round(lease_s / 60))
    return claimed


def mark_broken(*, session: Session, task_id: int, reason: str) -> Task:
    """Set a task aside (status ``broken``, its claim released) because a file it needs is
    missing or corrupt; ``reason`` (one line) is shown to admins. Needs no user: the system
    finds broken files while serving anyone."""
    task = get_task(session, task_id)
    return bump_task(session, task_id=task_id, expected_version=task.version,
                     status=TaskStatus.BROKEN.value, broken_reason=reason[:255],
                     assignee_id=None, claimed_at=None)


def restore_task(*, session: Session, task_id: int, user: Actor) -> Task:
    """An admin puts a repaired broken task back in the queue (status in_review)."""
    require_role(user, Role.ADMIN)
    task = get_task(session, task_id)
    if task.status != TaskStatus.BROKEN:
        raise InvalidActionError(f"Task {task_id} is {task.status}, not broken.")
    return bump_task(session, task_id=task_id, expected_version=task.version,
                     status=TaskStatus.IN_REVIEW.value, broken_reason=None)


def release_task(*, session: Session, task_id: int, user: Actor, expected_version: int) -> Task:
    """Give a claimed task back to the queue (its assignee or an admin)."""
    person = require_person(user, *REVIEW_ROLES)
    task = load_for_update(session, task_id, expected_version)
    if task.assignee_id not in (None, person.id) and person.role != Role.ADMIN:
        raise InvalidActionError(f"Task {task_id} is claimed by someone else.")
    return bump_task(
        session,
        task_id=task_id,
        expected_version=expected_version,
        assignee_id=None,
        claimed_at=None,
    )


def _reviewed_by(user_id: int, *, active_only: bool) -> ColumnElement[bool]:
    cond = and_(Review.task_id == Task.id, Review.reviewer_id == user_id)
    if active_only:
        cond = and_(cond, Review.active)
    return exists().where(cond)


def _candidates(
    session: Session, user: User, *, gold: bool, dataset_id: int | None, stale_before: datetime
) -> list[Task]:
    free = or_(
        Task.assignee_id.is_(None), Task.assignee_id == user.id, Task.claimed_at < stale_before
    )
    unseen = ~_reviewed_by(user.id, active_only=not gold)
    stmt = select(Task).where(Task.is_gold == gold, free, unseen,
                              Task.status != TaskStatus.BROKEN.value)
    if not gold:
        stmt = stmt.where(Task.status.in_(OPEN_STATUSES))
    if dataset_id is not None:
        stmt = stmt.where(Task.dataset_id == dataset_id)
    stmt = stmt.order_by(Task.priority.desc(), Task.id).limit(CANDIDATES)
    return list(session.scalars(stmt))


def _own_claim(
    session: Session, user: User, dataset_id: int | None, valid_after: datetime
) -> Task | None:
    stmt = select(Task).where(
        Task.assignee_id == user.id,
        Task.claimed_at >= valid_after,
        or_(Task.is_gold, Task.status.in_(OPEN_STATUSES)),
        Task.status != TaskStatus.BROKEN.value,
        ~_reviewed_by(user.id, active_only=True),
    )
    if dataset_id is not None:
        stmt = stmt.where(Task.dataset_id == dataset_id)
    return session.scalars(stmt.order_by(Task.claimed_at).limit(1)).first()


def reviews_done(session: Session, user_id: int, dataset_id: int | None = None) -> int:
    stmt = select(func.count(Review.id)).where(Review.reviewer_id == user_id)
    if dataset_id is not None:
        stmt = stmt.join(Task, Task.id == Review.task_id).where(Task.dataset_id == dataset_id)
    return int(session.scalar(stmt) or 0)


def next_task(
    *,
    session: Session,
    user: Actor,
    dataset_id: int | None = None,
    gold_every: int = 10,
    lease_s: float = DEFAULT_LEASE_S,
    now: datetime | None = None,
) -> Task | None:
    """Claim and return the highest-priority open task ``user`` has not reviewed yet.

    A task the user already holds (valid lease) is returned first, unchanged. Every
    ``gold_every``-th task (counting the user's reviews) is a gold task they have not seen,
    when one is left. None when the queue has nothing for this user.
    """
    person = require_person(user, *REVIEW_ROLES)
    now = now or utcnow()
    stale_before = now - timedelta(seconds=lease_s)
    held = _own_claim(session, person, dataset_id, stale_before)
    if held is not None:
        return held
    done = reviews_done(session, person.id, dataset_id)
    want_gold = gold_every > 0 and (done + 1) % gold_every == 0
    for gold in (True, False) if want_gold else (False,):
        for task in _candidates(
            session, person, gold=gold, dataset_id=dataset_id, stale_before=stale_before
        ):
            try:
                return claim_task(
                    session=session,
                    task_id=task.id,
                    user=person,
                    expected_version=task.version,
                    now=now,
                    lease_s=lease_s,
                )
            except (StaleRevisionError, ClaimedError):
                continue  # someone claimed or changed it meanwhile: try the next one
    return None


def set_required_reviews(
    *, session: Session, user: Actor, dataset_id: int, required_reviews: int
) -> int:
    """Set N (reviews per task) for a dataset and its open tasks; returns how many open tasks
    changed. Open tasks that already have N active reviews are decided now."""
    require_role(user, Role.ADMIN)
    if required_reviews < 1:
        raise InputError("Each task needs at least one review.")
    dataset = session.get(Dataset, dataset_id)
    if dataset is None:
        raise NotFoundError(f"There is no dataset {dataset_id}.")
    dataset.required_reviews = required_reviews
    tasks = session.scalars(
        select(Task)
        .where(Task.dataset_id == dataset_id, ~Task.is_gold, Task.status.in_(OPEN_STATUSES))
        .with_for_update()
    ).all()
    for task in tasks:
        decisions = [d for _, d in active_decisions(session, task.id)]
        status = consensus(decisions, required_reviews) if decisions else task.status
        bump_task(
            session,
            task_id=task.id,
            expected_version=task.version,
            required_reviews=required_reviews,
            status=status,
        )
    session.flush()
    return len(tasks)
