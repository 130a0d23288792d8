"""Revision history: the ordered data a label is recomputed from (teacher prediction +
corrections), and the records an export walks through. Applying masks, anchors or planes to the
depth map is geometry's job; this module only returns the rows in order."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from depthweb.errors import DepthwebError
from depthweb.store.models import (
    CORRECTION_ACTIONS,
    Image,
    Prediction,
    Revision,
    Task,
)

_CORRECTIONS = tuple(a.value for a in CORRECTION_ACTIONS)


def task_history(session: Session, task_id: int) -> list[Revision]:
    """Every revision of the task, oldest first (following parent links from the head)."""
    revs = session.scalars(
        select(Revision)
        .where(Revision.task_id == task_id)
        .options(selectinload(Revision.blob), selectinload(Revision.author))
    ).all()
    if not revs:
        return []
    children = {r.parent_id: r for r in revs}
    chain: list[Revision] = []
    node = children.get(None)
    while node is not None:
        chain.append(node)
        node = children.get(node.id)
    if len(chain) != len(revs):
        raise DepthwebError(f"The revision history of task {task_id} is not a single chain.")
    return chain


def current_corrections(session: Session, task_id: int) -> list[Revision]:
    """The label corrections (mask, anchors, ordinal, plane_fill, far_fill) in the order they
    were made: apply them in this order to the teacher prediction to get the current label."""
    return [r for r in task_history(session, task_id) if r.action in _CORRECTIONS]


@dataclass
class LabelRecord:
    """One image's label source for an export: teacher prediction + ordered corrections."""

    task: Task
    image: Image
    prediction: Prediction
    corrections: list[Revision] = field(default_factory=list)

    @property
    def status(self) -> str:
        return self.task.status

    @property
    def is_corrected(self) -> bool:
        return bool(self.corrections)


def label_records(
    session: Session,
    *,
    dataset_id: int,
    statuses: Iterable[str] | None = None,
    include_gold: bool = False,
) -> list[LabelRecord]:
    """Non-gold tasks of a dataset (optionally only these ``statuses``) with image, prediction
    and corrections loaded, ordered by image id."""
    stmt = (
        select(Task)
        .where(Task.dataset_id == dataset_id)
        .options(
            selectinload(Task.image).selectinload(Image.blob),
            selectinload(Task.prediction).selectinload(Prediction.depth_blob),
        )
        .order_by(Task.image_id)
    )
    if not include_gold:
        stmt = stmt.where(~Task.is_gold)
    if statuses is not None:
        stmt = stmt.where(Task.status.in_([str(s) for s in statuses]))
    tasks = session.scalars(stmt).all()
    by_task: dict[int, list[Revision]] = defaultdict(list)
    ids = [t.id for t in tasks]
    for chunk_start in range(0, len(ids), 500):
        chunk = ids[chunk_start : chunk_start + 500]
        for rev in session.scalars(
            select(Revision)
            .where(Revision.task_id.in_(chunk), Revision.action.in_(_CORRECTIONS))
            .options(selectinload(Revision.blob))
            .order_by(Revision.task_id, Revision.task_version)
        ):
            by_task[rev.task_id].append(rev)
    return [LabelRecord(t, t.image, t.prediction, by_task.get(t.id, [])) for t in tasks]
