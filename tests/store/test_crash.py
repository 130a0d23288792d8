"""A pseudo-labelling writer killed with SIGKILL mid-run, then re-run: no duplicate rows, no
orphan blobs, no row without its file, and (SQLite) ``PRAGMA integrity_check`` = ok."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
from pathlib import Path

import numpy as np
from sqlalchemy import func, select

from depthweb.store import SYSTEM, BlobStore, make_engine, session_scope
from depthweb.store.engine import sqlite_integrity_check
from depthweb.store.models import Blob, Prediction, Task
from depthweb.store.repo import (
    add_image,
    add_prediction,
    create_dataset,
    ensure_task,
    images_without_prediction,
)
from depthweb.types import DepthKind, Intrinsics

N_IMAGES = 12
COMMIT_DELAY_S = 0.15  # between writing the depth file and committing its rows


def pseudo_label(url: str, blob_root: Path, dataset_id: int) -> None:
    """A minimal resumable job: one image per transaction, file first, rows second."""
    engine = make_engine(url)
    store = BlobStore(blob_root)
    try:
        while True:
            with session_scope(engine, readonly=True) as s:
                todo = images_without_prediction(
                    s, dataset_id=dataset_id, model="teacher", weights="w1", limit=1
                )
            if not todo:
                return
            image_id = todo[0].id
            depth = store.put_array(np.full((6, 8), image_id, np.float32))  # deterministic
            time.sleep(COMMIT_DELAY_S)  # a kill here leaves a file without a row
            with session_scope(engine) as s:
                pred, _ = add_prediction(
                    session=s,
                    user=SYSTEM,
                    image_id=image_id,
                    model="teacher",
                    weights="w1",
                    kind=DepthKind.RELATIVE_DISPARITY,
                    intrinsics=Intrinsics.from_fov(8, 6, 60),
                    depth=depth,
                    store=store,
                )
                ensure_task(session=s, user=SYSTEM, image_id=image_id, prediction_id=pred.id)
    finally:
        engine.dispose()


def _count(engine, model) -> int:
    with session_scope(engine, readonly=True) as s:
        return int(s.scalar(select(func.count()).select_from(model)))


def test_killed_job_rerun_leaves_a_consistent_store(engine, db_url, store, backend):
    with session_scope(engine) as s:
        ds = create_dataset(session=s, user=SYSTEM, name="crash")
        for i in range(N_IMAGES):
            photo = store.put_bytes(bytes([i, 7]) * 50, ".png")
            add_image(
                session=s, user=SYSTEM, dataset_id=ds.id, blob=photo, store=store, width=8, height=6
            )
    blobs_before = _count(engine, Blob)
    proc = mp.get_context("fork").Process(target=pseudo_label, args=(db_url, store.root, ds.id))
    proc.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # kill once some work is done and a file awaits its row
        done = _count(engine, Prediction)
        with session_scope(engine, readonly=True) as s:
            pending = store.orphans(s)
        if done >= 3 and pending:
            break
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(10)
    assert proc.exitcode == -signal.SIGKILL
    done = _count(engine, Prediction)
    assert 3 <= done < N_IMAGES
    with session_scope(engine, readonly=True) as s:
        assert len(store.orphans(s)) == 1  # the killed image's depth file (or its temp file)
    assert _count(engine, Blob) == blobs_before + done

    pseudo_label(db_url, store.root, ds.id)  # re-run to completion
    pseudo_label(db_url, store.root, ds.id)  # and once more: nothing left to do

    assert _count(engine, Prediction) == _count(engine, Task) == N_IMAGES
    with session_scope(engine, readonly=True) as s:
        dupes = s.execute(
            select(Prediction.image_id).group_by(Prediction.image_id).having(func.count() > 1)
        ).all()
        assert dupes == []
        assert store.missing(s) == []  # no row without its file
        # the killed write left either a finished file (now registered by the re-run, same
        # content) or a temp file; only temp files may remain, and gc removes them
        leftovers = store.orphans(s)
        assert all(p.name.startswith(".tmp-") for p in leftovers)
        assert store.gc(s, min_age_s=0) == leftovers
        assert store.orphans(s) == []
    if backend == "sqlite":
        assert sqlite_integrity_check(engine) == "ok"
