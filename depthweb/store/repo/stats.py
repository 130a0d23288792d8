"""Crowd statistics: per-reviewer counts, agreement with the consensus, gold accuracy."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import exists, func, select
from sqlalchemy.orm import Session

from depthweb.store.models import FINAL_STATUSES, Decision, Image, Review, Task, TaskStatus, User

_DECISION_OF_STATUS = {
    TaskStatus.APPROVED.value: Decision.APPROVE.value,
    TaskStatus.REJECTED.value: Decision.REJECT.value,
}


@dataclass
class ReviewerStats:
    """``agreement_rate``: share of the reviewer's decided, still-active reviews that match the
    task's final status (consensus or adjudication); ``gold_accuracy``: share of gold reviews
    that match the known answer. None when there is nothing to measure."""

    user_id: int
    name: str
    n_reviews: int = 0
    n_approve: int = 0
    n_reject: int = 0
    n_decided: int = 0
    n_agree: int = 0
    n_gold: int = 0
    n_gold_correct: int = 0

    @property
    def agreement_rate(self) -> float | None:
        return self.n_agree / self.n_decided if self.n_decided else None

    @property
    def gold_accuracy(self) -> float | None:
        return self.n_gold_correct / self.n_gold if self.n_gold else None


def reviewer_stats(session: Session, *, dataset_id: int | None = None) -> list[ReviewerStats]:
    """One entry per user who reviewed anything (in the dataset), by name."""
    stmt = (
        select(
            User.id,
            User.name,
            Review.decision,
            Review.active,
            Task.is_gold,
            Task.gold_decision,
            Task.status,
        )
        .join(Review, Review.reviewer_id == User.id)
        .join(Task, Task.id == Review.task_id)
    )
    if dataset_id is not None:
        stmt = stmt.where(Task.dataset_id == dataset_id)
    stats: dict[int, ReviewerStats] = {}
    for uid, name, decision, active, is_gold, gold_decision, status in session.execute(stmt):
        s = stats.setdefault(uid, ReviewerStats(user_id=uid, name=name))
        if is_gold:
            s.n_gold += 1
            s.n_gold_correct += int(decision == gold_decision)
            continue
        s.n_reviews += 1
        s.n_approve += int(decision == Decision.APPROVE)
        s.n_reject += int(decision == Decision.REJECT)
        if active and status in FINAL_STATUSES:
            s.n_decided += 1
            s.n_agree += int(_DECISION_OF_STATUS[status] == decision)
    return sorted(stats.values(), key=lambda s: s.name)


def queue_counts(session: Session, *, dataset_id: int | None = None) -> dict[str, int]:
    """Number of non-gold tasks per status (every status present, zeros included)."""
    stmt = select(Task.status, func.count(Task.id)).where(~Task.is_gold).group_by(Task.status)
    if dataset_id is not None:
        stmt = stmt.where(Task.dataset_id == dataset_id)
    counts = {s.value: 0 for s in TaskStatus}
    counts.update({str(k): int(v) for k, v in session.execute(stmt)})
    return counts


def count_unlabelled(session: Session, *, dataset_id: int) -> int:
    """Images of the dataset with no review task yet (a pseudo-label job has not reached
    them, or is still running)."""
    has_task = exists().where(Task.image_id == Image.id)
    return int(session.scalar(select(func.count(Image.id)).where(
        Image.dataset_id == dataset_id, ~has_task)) or 0)
