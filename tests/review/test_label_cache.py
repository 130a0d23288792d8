"""A correction's label files can be computed again (SQLite and PostgreSQL): when one is missing
or damaged, the label is replayed from the history, written again and shown as before; the task
is not set aside, ``db check`` calls it recomputable, and the export carries on. An admin's
pick is data of its own (a lost one sets the task aside)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from depthweb.services.review import current_label, export_dataset
from depthweb.services.review import session as svc
from depthweb.services.review.admin import check_store
from depthweb.services.review.labels import is_derived, recover_label
from depthweb.store import SYSTEM, BlobRef, BlobStore
from depthweb.store.errors import BrokenTaskError
from depthweb.store.repo import get_task, label_head
from tests.review.conftest import make_tasks, scene_disparity
from tests.review.test_broken import corrupt_same_size, status
from tests.review.test_previews import fresh

H, W = 48, 64


def box(rows: slice, cols: slice) -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[rows, cols] = True
    return m


def corrected(ctx) -> tuple[int, np.ndarray, Path, str]:
    """The top task after a mask and a far fill by ``rev``: (task id, its label depth, the
    head's label file, that file's sha256)."""
    make_tasks(ctx, [scene_disparity(i) for i in range(3)])
    page = svc.next_page(ctx, "rev", gold_every=0)
    v = svc.save_region(ctx, "rev", page.task_id, page.version, box(slice(0, 8), slice(None)),
                        "mask")
    svc.save_region(ctx, "rev", page.task_id, v, box(slice(40, 48), slice(0, 20)), "far")
    with ctx.session(readonly=True) as s:
        label = current_label(s, page.task_id, store=ctx.store)
        head = label_head(s, page.task_id, None)
        ref = BlobRef.from_row(head.label_blob)
    assert label.source == "corrected" and label.ignore_mask[:8].all() and label.far_mask.any()
    return page.task_id, label.depth.copy(), Path(ctx.store.path(ref)), ref.sha256


@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_a_lost_label_file_is_replayed_and_written_again(ctx, users, damage, tmp_path):
    task, depth, path, sha = corrected(ctx)
    path.unlink() if damage == "missing" else corrupt_same_size(path)
    other = fresh(ctx)  # another server process: nothing verified in memory
    try:
        # db check reports it as recomputable: the task is not set aside
        report = check_store(other)
        assert [(p.problem, p.recomputable, p.task_ids) for p in report.problems] == [
            (damage, True, (task,))]
        assert report.broken_tasks == [] and "computed again" in report.problems[0].sentence()
        assert status(other, task)[0] != "broken"
        page = svc.open_page(other, "rev", task)  # the reviewer's page, as before
        assert page.n_corrections == 2 and page.source == "corrected"
        with other.session(readonly=True) as s:
            again = current_label(s, task, store=other.store)
        np.testing.assert_array_equal(again.depth, depth)  # NaN where masked, both
        assert hashlib.sha256(path.read_bytes()).hexdigest() == sha  # the file is back
        assert check_store(fresh(ctx)).problems == []
        # lost again: the export replays it too, and exports all three tasks
        path.unlink()
        out = export_dataset(fresh(ctx), "scenes", tmp_path / "exp", user=SYSTEM)
        assert out.count == 3 and status(ctx, task)[0] != "broken"
        assert hashlib.sha256(path.read_bytes()).hexdigest() == sha  # restored by the export
    finally:
        other.close()


def test_a_pick_label_is_not_a_cache(ctx, users):
    """Only corrections and undos are derived: recovering any other revision's label refuses
    (the task is set aside as for a lost photo)."""
    task, _depth, _path, _sha = corrected(ctx)
    with ctx.session(readonly=True) as s:
        head = label_head(s, task, None)
        assert is_derived(head)
        s.expunge(head)
        head.action = "pick"  # a detached copy: nothing is written
        with pytest.raises(BrokenTaskError, match="missing or damaged"):
            recover_label(ctx, s, get_task(s, task), None, head)


def test_a_repair_writes_a_damaged_file_of_the_same_size_again(tmp_path):
    """Content addressing skips a write when a file of that name and size exists; a repair
    (``replace=True``) writes it anyway."""
    store = BlobStore(tmp_path / "blobs")
    arr = np.arange(12, dtype=np.float32).reshape(3, 4)
    ref = store.put_array(arr)
    Path(store.path(ref)).write_bytes(b"\0" * ref.nbytes)  # damaged, same size
    store.put_array(arr)
    assert Path(store.path(ref)).read_bytes() == b"\0" * ref.nbytes  # skipped
    store.put_array(arr, replace=True)
    assert np.array_equal(np.load(store.path(ref)), arr)
