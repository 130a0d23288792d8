"""Anchors kept as a recipe (SQLite and PostgreSQL): an anchors correction on a label kept in
files of its own writes no new label file; its revision points at the starting label's files
and reading it gives the very label shown at the save (a fresh process, the export, a replay,
an undo back to it, a crowd's agreement); a lost file of a recipe is computed again."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from depthweb.services.review import current_label, export_dataset, export_label, save_correction
from depthweb.services.review import session as svc
from depthweb.services.review.admin import check_store, set_reviews_per_task
from depthweb.services.review.labels import replay_branch
from depthweb.store import SYSTEM, BlobRef
from depthweb.store.repo import get_task, label_head
from depthweb.store.repo.branches import RECIPE_KEY_PREFIX, label_key
from depthweb.types import DepthKind
from tests.review.conftest import make_tasks, scene_disparity
from tests.review.test_broken import status
from tests.review.test_previews import fresh

H, W = 48, 64


def box(rows: slice, cols: slice) -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[rows, cols] = True
    return m


def anchors_for(disparity: np.ndarray, k: float = 2.0) -> list[list[float]]:
    """Two anchors on clearly different disparities, with depths ``k / disparity`` (an exact
    scale, zero shift fit)."""
    (u1, v1), (u2, v2) = (5, 44), (60, 10)
    assert abs(disparity[v1, u1] - disparity[v2, u2]) > 0.05
    return [[u1, v1, k / float(disparity[v1, u1])], [u2, v2, k / float(disparity[v2, u2])]]


def version(ctx, task_id: int) -> int:
    with ctx.session(readonly=True) as s:
        return get_task(s, task_id).version


def blob_files(ctx) -> set[Path]:
    return {p for p in Path(ctx.store.root).rglob("*.npy")}


def label_of(ctx, task_id: int, branch: int | None = None):
    with ctx.session(readonly=True) as s:
        return current_label(s, task_id, store=ctx.store, branch_id=branch)


def head_of(ctx, task_id: int, branch: int | None = None):
    with ctx.session(readonly=True) as s:
        head = label_head(s, task_id, branch)
        s.expunge(head)
        return head


def test_anchors_on_the_teacher_write_no_label_file(ctx, users, tmp_path):
    depths = [scene_disparity(i) for i in range(2)]
    first, second = make_tasks(ctx, depths)
    svc.save_anchors(ctx, "rev", first, version(ctx, first), anchors_for(depths[0]))
    before = blob_files(ctx)  # the all-zero flags file of this size exists now
    result = save_correction(ctx, task_id=second, user="rev",
                             expected_version=version(ctx, second), action="anchors",
                             payload={"anchors": anchors_for(depths[1])})
    assert blob_files(ctx) == before  # no file at all for the second task's anchors
    head = head_of(ctx, second)
    with ctx.session(readonly=True) as s:
        pred = get_task(s, second).prediction
        assert head.label_blob_sha256 == pred.depth_blob_sha256  # the teacher's own file
    recipe = head.payload["recipe"]
    assert recipe["action"] == "anchors" and recipe["start_kind"] == "relative_disparity"
    assert label_key(head)[0].startswith(RECIPE_KEY_PREFIX) and result.label.key == label_key(head)
    shown = result.label
    assert shown.kind is DepthKind.METRIC_DEPTH
    np.testing.assert_allclose(shown.depth, 2.0 / depths[1], rtol=1e-4)
    other = fresh(ctx)  # another process reads it: the same bytes as shown at the save
    try:
        again = label_of(other, second)
        assert again.map.equals(shown.map) and again.source == "corrected"
        assert again.n_corrections == 1 and again.key == shown.key
        page = svc.open_page(other, "rev", second)
        assert page.kind == "metric_depth" and page.n_corrections == 1
        with other.session(readonly=True) as s:
            task = get_task(s, second)
            assert replay_branch(other, s, task, None).map.equals(shown.map)
            assert export_label(other.store, s, task).map.equals(shown.map)
    finally:
        other.close()
    out = export_dataset(ctx, "scenes", tmp_path / "exp", user=SYSTEM)
    assert out.count == 2


def test_a_recipe_starts_from_a_written_label_never_from_another_recipe(ctx, users):
    depth = scene_disparity(3)
    [task] = make_tasks(ctx, [depth])
    v = svc.save_region(ctx, "rev", task, version(ctx, task), box(slice(0, 6), slice(None)),
                        "mask")
    masked = head_of(ctx, task)
    v = svc.save_anchors(ctx, "rev", task, v, anchors_for(depth))
    anchored = head_of(ctx, task)
    assert anchored.payload.get("recipe") and "recipe" not in masked.payload
    assert (anchored.label_blob_sha256, anchored.flags_blob_sha256) == (
        masked.label_blob_sha256, masked.flags_blob_sha256)  # on the mask's files
    label = label_of(ctx, task)
    assert label.ignore_mask[:6].all() and not label.ignore_mask[6:].any()
    assert label.kind is DepthKind.METRIC_DEPTH
    # anchors again: its start is a recipe, so this label is written as a file of its own
    svc.save_anchors(ctx, "rev", task, v, anchors_for(depth, k=3.0))
    again = head_of(ctx, task)
    assert "recipe" not in again.payload
    assert again.label_blob_sha256 not in (masked.label_blob_sha256,)
    final = label_of(ctx, task)
    np.testing.assert_allclose(final.depth[6:], 3.0 / depth[6:], rtol=1e-4)
    with ctx.session(readonly=True) as s:
        assert replay_branch(ctx, s, get_task(s, task), None).map.equals(final.map)


def test_undo_back_to_a_recipe_gives_its_label(ctx, users):
    depth = scene_disparity(4)
    [task] = make_tasks(ctx, [depth])
    v = svc.save_anchors(ctx, "rev", task, version(ctx, task), anchors_for(depth))
    anchored = label_of(ctx, task)
    v = svc.save_region(ctx, "rev", task, v, box(slice(40, 48), slice(0, 30)), "far")
    filled = label_of(ctx, task)
    assert filled.far_mask.any() and not filled.map.equals(anchored.map)
    svc.undo(ctx, "rev", task, v)
    undo = head_of(ctx, task)
    assert undo.action == "undo" and undo.payload["recipe"]["action"] == "anchors"
    back = label_of(ctx, task)
    assert back.map.equals(anchored.map) and back.key == anchored.key
    with ctx.session(readonly=True) as s:
        assert replay_branch(ctx, s, get_task(s, task), None).map.equals(anchored.map)


def test_crowd_branches_agree_on_equal_anchors_only(ctx, users):
    depths = [scene_disparity(5), scene_disparity(6)]
    agree, differ = make_tasks(ctx, depths)
    set_reviews_per_task(ctx, "admin", "scenes", 2)
    for task, depth in ((agree, depths[0]), (differ, depths[1])):
        for name, k in (("rev", 2.0), ("rev2", 2.0 if task == agree else 2.5)):
            save_correction(ctx, task_id=task, user=name, expected_version=version(ctx, task),
                            action="anchors", payload={"anchors": anchors_for(depth, k)})
            svc.approve(ctx, name, task, version(ctx, task))
    assert status(ctx, agree)[0] == "approved"  # two branches, the same recipe on the same file
    assert status(ctx, differ)[0] == "submitted"  # same file, different anchors: no agreement
    with ctx.session(readonly=True) as s:
        label = export_label(ctx.store, s, get_task(s, agree))
    np.testing.assert_allclose(label.depth, 2.0 / depths[0], rtol=1e-4)


@pytest.mark.parametrize("lost", ["flags", "teacher"])
def test_a_lost_file_under_a_recipe(ctx, users, lost):
    """The all-zero flags file is computed again (the teacher's label has those flags); the
    teacher's prediction is data of its own, so losing it sets the task aside."""
    depth = scene_disparity(7)
    [task] = make_tasks(ctx, [depth])
    result = save_correction(ctx, task_id=task, user="rev", expected_version=version(ctx, task),
                             action="anchors", payload={"anchors": anchors_for(depth)})
    head = head_of(ctx, task)
    with ctx.session(readonly=True) as s:
        row = head.flags_blob if lost == "flags" else get_task(s, task).prediction.depth_blob
        ref = BlobRef.from_row(row)
    path = Path(ctx.store.path(ref))
    path.unlink()
    other = fresh(ctx)
    try:
        report = check_store(other)
        assert [(p.problem, p.recomputable, p.task_ids) for p in report.problems] == [
            ("missing", lost == "flags", (task,))]
        if lost == "flags":
            assert label_of(other, task).map.equals(result.label.map)
            assert hashlib.sha256(path.read_bytes()).hexdigest() == ref.sha256  # written again
            assert check_store(fresh(ctx)).problems == []
        else:
            with pytest.raises(Exception, match=r"missing|damaged|cannot"):
                svc.open_page(other, "rev", task)
            assert status(other, task)[0] == "broken"
    finally:
        other.close()
