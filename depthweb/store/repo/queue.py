"""The review queue: claiming tasks, the next task for a reviewer (with gold tasks mixed in),
and the N-reviews-per-task setting.

A claim is a lease (``lease_s``): while it lasts, :func:`next_task` hands the task to nobody
else, so reviewers work on different tasks instead of racing each other on the top one. Claims
are task mutations like any other (version-guarded). Submitting a review releases the claim.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, exists, func, or_, select
from sqlalchemy.orm import Session

from depthweb.errors import InputError
from depthweb.store.auth import Actor, require_person, require_role
from depthweb.store.errors import InvalidActionError, NotFoundError, StaleRevisionError
from depthweb.store.models import Dataset, Review, Role, Task, TaskStatus, User, utcnow
from depthweb.store.repo._common import bump_task, load_for_update
from depthweb.store.repo.review import REVIEW_ROLES, active_decisions, consensus

OPEN_STATUSES = (TaskStatus.NEW.value, TaskStatus.IN_REVIEW.value)
DEFAULT_LEASE_S = 600.0
CANDIDATES = 20


def claim_task(
    *,
    session: Session,
    task_id: int,
    user: Actor,
    expected_version: int,
    now: datetime | None = None,
) -> Task:
    """Assign the task to ``user`` for a lease; a new (non-gold) task becomes in_review."""
    person = require_person(user, *REVIEW_ROLES)
    task = load_for_update(session, task_id, expected_version)
    if not task.is_gold and task.status not in OPEN_STATUSES:
        raise InvalidActionError(f"Task {task_id} is {task.status}; it cannot be claimed.")
    status = (
        TaskStatus.IN_REVIEW.value
        if task.status == TaskStatus.NEW and not task.is_gold
        else task.status
    )
    return bump_task(
        session,
        task_id=task_id,
        expected_version=expected_version,
        assignee_id=person.id,
        claimed_at=now or utcnow(),
        status=status,
    )


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
    stmt = select(Task).where(Task.is_gold == gold, free, unseen)
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
                )
            except StaleRevisionError:
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
