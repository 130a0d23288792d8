"""A reviewer process for the fault tests: saves notes, ignore masks, scale anchors, approvals
and rejections through the Review service functions the app calls
(``depthweb.services.review.session``), one after another, on the open tasks of a database.

After each save returns (committed) it appends ``SAVED <task> <new version> <action>`` to its
marker file, so the parent knows what was committed before it kills the process. Runs in a
forked child (:func:`start`): the parent's imports are shared, nothing is imported per round.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import select

from depthweb.config import Settings
from depthweb.errors import InputError
from depthweb.services.review import ReviewContext
from depthweb.services.review import session as review
from depthweb.store.models import Task
from tests.faults import pauses

ACTIONS = ("note", "mask", "anchors", "approve", "reject")
WEIGHTS = (0.25, 0.35, 0.15, 0.17, 0.08)
USER = "rev"


@dataclass(frozen=True)
class Save:
    task_id: int
    version: int
    action: str


def read_saves(marker: Path) -> list[Save]:
    lines = marker.read_text().splitlines() if marker.exists() else []
    return [Save(int(t), int(v), a) for _, t, v, a in
            (line.split() for line in lines if line.startswith("SAVED "))]


def _save(ctx: ReviewContext, rng: np.random.Generator, task_id: int, version: int,
          shape: tuple[int, int], action: str) -> int:
    h, w = shape
    if action == "note":
        return review.save_note(ctx, USER, task_id, version, f"note {rng.integers(1e6)}")
    if action == "mask":
        region = np.zeros((h, w), bool)
        r, c = int(rng.integers(0, h - 4)), int(rng.integers(0, w - 4))
        region[r:r + int(rng.integers(2, 12)), c:c + int(rng.integers(2, 16))] = True
        return review.save_region(ctx, USER, task_id, version, region, "mask")
    if action == "anchors":
        rows = [[int(rng.integers(0, w)), int(rng.integers(0, h)), float(rng.uniform(1, 5))]
                for _ in range(2)]
        return review.save_anchors(ctx, USER, task_id, version, rows)
    if action == "approve":
        return review.approve(ctx, USER, task_id, version)
    return review.reject(ctx, USER, task_id, version, ["sky"], "")


def work(settings: Settings, seed: int, marker: str, specs: list[dict],
         max_saves: int) -> None:
    """The child's body: ``max_saves`` saves on random open tasks (seeded), then return."""
    os.environ[pauses.MARKER_ENV] = marker
    if specs:
        pauses.install(specs)
    rng = np.random.default_rng(seed)
    ctx = ReviewContext.from_settings(settings)
    for _ in range(max_saves):
        with ctx.session(readonly=True) as s:
            tasks = s.scalars(select(Task).where(Task.status.in_(("new", "in_review")))
                              .order_by(Task.id)).all()
            open_tasks = [(t.id, t.version, tuple(t.prediction.depth_blob.shape))
                          for t in tasks]
        if not open_tasks:
            break
        task_id, version, shape = open_tasks[int(rng.integers(len(open_tasks)))]
        action = str(rng.choice(ACTIONS, p=WEIGHTS))
        try:
            new_version = _save(ctx, rng, task_id, version, shape, action)
        except InputError as exc:  # e.g. anchors the label cannot be fitted to
            pauses.mark(f"REFUSED {task_id} {action} {exc}".replace("\n", " "))
            continue
        pauses.mark(f"SAVED {task_id} {new_version} {action}")
    pauses.mark("DONE")


def start(settings: Settings, seed: int, marker: Path, specs: list[dict],
          max_saves: int = 200) -> mp.Process:
    """Fork a reviewer process (a real process: SIGKILL ends it like any other)."""
    marker.unlink(missing_ok=True)
    proc = mp.get_context("fork").Process(
        target=work, args=(settings, seed, str(marker), specs, max_saves), daemon=True)
    proc.start()
    return proc
