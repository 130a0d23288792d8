"""Blob verification: every blob row's file is read back and its sha256 compared with the
row's, and each problem is traced to the review tasks that need the file.

A correction's or undo's label files can be computed again from the task's history (the
review service replays them when read): their problems are reported as ``recomputable`` and set
no task aside.

Uses only the blob store's public read API (:meth:`BlobStore.get_bytes`), so it works on any
store that serves the same refs.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from depthweb.store.blobs import BlobRef, BlobStore
from depthweb.store.models import (
    CORRECTION_ACTIONS,
    Action,
    Blob,
    Image,
    Prediction,
    Revision,
    Task,
)


@dataclass(frozen=True)
class BlobProblem:
    """A blob whose file is ``missing`` or ``corrupt`` (sha256 mismatch), and the tasks that
    need it (by id)."""

    sha256: str
    path: str
    problem: str
    task_ids: tuple[int, ...] = ()
    recomputable: bool = False

    def sentence(self) -> str:
        tasks = (f"task(s) {', '.join(map(str, self.task_ids))}" if self.task_ids
                 else "no task")
        if self.recomputable:
            return (f"{self.problem} label file {self.sha256[:12]} ({self.path}) of {tasks}: "
                    f"computed again from the corrections when the label is read")
        return f"{self.problem} blob {self.sha256[:12]} ({self.path}), needed by {tasks}"


@dataclass
class CheckReport:
    """What :func:`check_blobs` found: ``n_checked`` blobs, ``problems`` among them."""

    n_checked: int = 0
    problems: list[BlobProblem] = field(default_factory=list)

    @property
    def broken_tasks(self) -> list[int]:
        """Tasks that need a missing or corrupt file that cannot be computed again."""
        return sorted({t for p in self.problems if not p.recomputable for t in p.task_ids})


_DERIVED_ACTIONS = frozenset({*(a.value for a in CORRECTION_ACTIONS), Action.UNDO.value})
"""Revisions whose label files can be computed again from the history (replayed when lost)."""


def _users_of_blobs(session: Session) -> tuple[dict[str, set[int]], set[str]]:
    """(sha256 -> ids of the tasks that need the blob (photo, prediction, corrections), the
    blobs some task needs as data of their own rather than as a derived label)."""
    users: dict[str, set[int]] = defaultdict(set)
    source: set[str] = set()
    rows = session.execute(select(Task.id, Image.blob_sha256, Prediction.depth_blob_sha256)
                           .join(Image, Image.id == Task.image_id)
                           .join(Prediction, Prediction.id == Task.prediction_id))
    for task_id, photo, depth in rows:
        users[photo].add(int(task_id))
        users[depth].add(int(task_id))
        source.update((photo, depth))
    rev_rows = session.execute(select(Revision.task_id, Revision.action, Revision.blob_sha256,
                                      Revision.label_blob_sha256, Revision.flags_blob_sha256))
    for task_id, action, region, *labels in rev_rows:
        for sha in (region, *labels):
            if sha:
                users[sha].add(int(task_id))
        source.add(region)
        if action not in _DERIVED_ACTIONS:
            source.update(labels)
    source.discard(None)
    return users, source


def check_blobs(
    session: Session, store: BlobStore, *, progress: Callable[[int, int], None] | None = None
) -> CheckReport:
    """Read every blob file back and compare its sha256 with its row (module docs)."""
    blobs = session.scalars(select(Blob).order_by(Blob.sha256)).all()
    users, source = _users_of_blobs(session)
    report = CheckReport()
    for i, row in enumerate(blobs, start=1):
        ref = BlobRef.from_row(row)
        try:
            data = store.get_bytes(ref)
            problem = None if hashlib.sha256(data).hexdigest() == ref.sha256 else "corrupt"
        except OSError:
            problem = "missing"
        report.n_checked += 1
        if problem:
            tasks = tuple(sorted(users.get(ref.sha256, ())))
            report.problems.append(BlobProblem(
                ref.sha256, ref.path, problem, tasks,
                recomputable=bool(tasks) and ref.sha256 not in source))
        if progress is not None:
            progress(i, len(blobs))
    return report
