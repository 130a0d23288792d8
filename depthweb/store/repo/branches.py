"""Labels per revision and independent crowd branches.

A *label revision* (:data:`~depthweb.store.models.LABEL_ACTIONS`) keeps the label it produced
(depth + flags blobs; or, kept as a recipe, the blobs of the label it started from and the
correction: :mod:`depthweb.services.review.labels`), so the current label of a task is one row
away, whatever the length of its history. On *branchy* tasks (gold tasks, and tasks that need
more than one review) every reviewer corrects the teacher's pseudo-label on their own branch
(``branch_id`` = their user id) and sees only their own branch; the shared label (``branch_id``
NULL) is what an admin picks or merges from the branches, or what the approvers agreed on.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from depthweb.store.auth import Actor, require_person
from depthweb.store.blobs import BlobRef, BlobStore
from depthweb.store.errors import InvalidActionError
from depthweb.store.models import (
    LABEL_ACTIONS,
    Action,
    Decision,
    Review,
    Revision,
    Role,
    Task,
    TaskStatus,
    User,
)
from depthweb.store.repo._common import append_revision, bump_task, load_for_update

_LABEL_ACTIONS = tuple(a.value for a in LABEL_ACTIONS)


def is_branchy(task: Task) -> bool:
    """Gold tasks and tasks that need several reviews keep one branch per reviewer."""
    return bool(task.is_gold) or int(task.required_reviews) > 1


def branch_of(task: Task, person: User) -> int | None:
    """The branch ``person`` writes to on ``task``: their own on branchy tasks (admins: the
    shared label), None (the shared label) otherwise."""
    if is_branchy(task) and person.role != Role.ADMIN:
        return int(person.id)
    return None


def _branch_filter(stmt: Any, branch_id: int | None) -> Any:
    if branch_id is None:
        return stmt.where(Revision.branch_id.is_(None))
    return stmt.where(Revision.branch_id == branch_id)


def label_revisions(session: Session, task_id: int, branch_id: int | None) -> list[Revision]:
    """The label revisions of one branch of a task, oldest first."""
    stmt = (select(Revision)
            .where(Revision.task_id == task_id, Revision.action.in_(_LABEL_ACTIONS))
            .options(selectinload(Revision.label_blob), selectinload(Revision.flags_blob),
                     selectinload(Revision.blob))
            .order_by(Revision.task_version))
    return list(session.scalars(_branch_filter(stmt, branch_id)))


def label_head(session: Session, task_id: int, branch_id: int | None) -> Revision | None:
    """The newest label revision of one branch (None: the branch is the teacher's label)."""
    stmt = (select(Revision)
            .where(Revision.task_id == task_id, Revision.action.in_(_LABEL_ACTIONS))
            .options(selectinload(Revision.label_blob), selectinload(Revision.flags_blob))
            .order_by(Revision.task_version.desc()).limit(1))
    return session.scalars(_branch_filter(stmt, branch_id)).first()


RECIPE_KEY_PREFIX = "recipe-"
"""How the first half of a recipe label's key starts (it names no blob)."""


def label_key(rev: Revision | None) -> tuple[str | None, str | None]:
    """What identifies a label: its (depth, flags) blob hashes; (None, None) = the teacher's.
    A label kept as a recipe (``payload["recipe"]``: a correction applied to the label in
    those blobs) is named by a hash of the blobs' hashes and the recipe."""
    if rev is None:
        return None, None
    recipe = (rev.payload or {}).get("recipe")
    if recipe:
        text = json.dumps([rev.label_blob_sha256, rev.flags_blob_sha256, recipe],
                          sort_keys=True, separators=(",", ":"))
        return RECIPE_KEY_PREFIX + hashlib.sha256(text.encode()).hexdigest(), None
    return rev.label_blob_sha256, rev.flags_blob_sha256


def branch_labels_agree(session: Session, task_id: int, reviewer_ids: Iterable[int]) -> bool:
    """Whether the branches of ``reviewer_ids`` hold the same label (bit for bit)."""
    keys = {label_key(label_head(session, task_id, r)) for r in reviewer_ids}
    return len(keys) <= 1


def approved_branches(session: Session, task_id: int) -> list[int]:
    """Reviewers whose active review of the task approves it (their branches)."""
    return [int(r) for r in session.scalars(
        select(Review.reviewer_id).where(Review.task_id == task_id, Review.active,
                                         Review.decision == Decision.APPROVE.value)
        .order_by(Review.id))]


def export_head(session: Session, task: Task) -> Revision | None:
    """The label revision an export uses: the shared label's newest revision; on a crowd task
    without one, the branch its approvers agreed on (None: the teacher's label)."""
    shared = label_head(session, task.id, None)
    if shared is not None or not is_branchy(task):
        return shared
    approvers = approved_branches(session, task.id)
    return label_head(session, task.id, approvers[0]) if approvers else None


def pick_label(
    *,
    session: Session,
    task_id: int,
    user: Actor,
    expected_version: int,
    label: tuple[BlobRef, BlobRef] | None,
    payload: dict[str, Any],
    store: BlobStore,
    decision: Decision | str = Decision.APPROVE,
    rules_version: int = 1,
) -> Revision:
    """An admin sets the shared label (picked from a branch, merged from several, or re-made
    with new rules) and decides the task; ``label`` None = the teacher's prediction."""
    person = require_person(user, Role.ADMIN)
    decision = Decision(decision)
    task = load_for_update(session, task_id, expected_version)
    if task.status == TaskStatus.BROKEN:
        raise InvalidActionError(f"Task {task_id} is set aside as broken; repair it first.")
    for ref in label or ():
        store.register(session, ref)
    status = task.status if task.is_gold else (
        TaskStatus.APPROVED if decision is Decision.APPROVE else TaskStatus.REJECTED)
    task = bump_task(session, task_id=task_id, expected_version=expected_version, status=status,
                     assignee_id=None, claimed_at=None)
    return append_revision(session, task, author_id=person.id, action=Action.PICK.value,
                           payload={**payload, "decision": decision.value}, label=label,
                           rules_version=rules_version)


def branch_owners(session: Session, task_id: int) -> list[int]:
    """Reviewers with a branch (any revision) on the task."""
    rows = session.scalars(select(Revision.branch_id).where(
        Revision.task_id == task_id, Revision.branch_id.is_not(None)).distinct())
    return sorted(int(r) for r in rows)


def recent_history(session: Session, task: Task, viewer: User, limit: int = 100
                   ) -> tuple[list[Revision], int]:
    """The newest ``limit`` history rows ``viewer`` may see (see :func:`visible_history`),
    oldest first, and how many rows they may see in all."""
    settled = not task.is_gold and task.status in (TaskStatus.APPROVED, TaskStatus.REJECTED)
    cond = [Revision.task_id == task.id]
    if viewer.role != Role.ADMIN and is_branchy(task) and not settled:
        cond.append(Revision.author_id == viewer.id)
    total = int(session.scalar(select(func.count(Revision.id)).where(*cond)) or 0)
    rows = session.scalars(select(Revision).where(*cond)
                           .options(selectinload(Revision.author))
                           .order_by(Revision.task_version.desc()).limit(limit)).all()
    return list(reversed(rows)), total


def visible_history(session: Session, revs: Sequence[Revision], task: Task,
                    viewer: User) -> list[Revision]:
    """The history rows ``viewer`` may see: everything for admins and on ordinary tasks; on
    branchy tasks a reviewer sees only their own rows until the task is settled (gold tasks
    never settle for reviewers)."""
    settled = not task.is_gold and task.status in (TaskStatus.APPROVED, TaskStatus.REJECTED)
    if viewer.role == Role.ADMIN or not is_branchy(task) or settled:
        return list(revs)
    return [r for r in revs if r.author_id == viewer.id]
