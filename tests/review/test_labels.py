"""Each correction stores the label it produced; replaying the history (with each revision's
rules version) gives the same label, bit for bit; impossible, stale or over-limit corrections
save nothing; a task with 10,000 saved pairs opens in well under a second."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import func, select

from depthweb.errors import InputError
from depthweb.geometry.corrections import LabelMap, apply_correction
from depthweb.services.review import (
    ReviewContext,
    current_label,
    save_correction,
)
from depthweb.services.review.labels import guide_image, replay_branch
from depthweb.store import PermissionDeniedError, StaleRevisionError
from depthweb.store.errors import ClaimedError
from depthweb.store.models import Revision
from depthweb.store.repo import get_task
from depthweb.types import DepthKind, Intrinsics
from tests.review.conftest import make_tasks, scene_disparity

H, W = 48, 64


def box(rows: slice, cols: slice) -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[rows, cols] = True
    return m


CORRECTIONS = [  # (action, payload, region): what a reviewer does, in order
    ("mask", {}, box(slice(0, 6), slice(None))),  # sky
    ("ordinal", {"pairs": [[2, 40, 60, 40]]}, None),  # left is closer than right
    ("plane_fill", {"ring_px": 2}, box(slice(20, 30), slice(20, 34))),  # a glass table
    ("anchors", {"anchors": [[10, 40, 1.5], {"u": 50, "v": 12, "depth": 4.0}]}, None),
    ("far_fill", {}, box(slice(0, 4), slice(0, 20))),
    ("mask", {"mode": "subtract"}, box(slice(0, 6), slice(0, 10))),
]


def version(ctx: ReviewContext, task_id: int) -> int:
    with ctx.session(readonly=True) as s:
        return get_task(s, task_id).version


def recomputed(ctx: ReviewContext, task_id: int):
    with ctx.session(readonly=True) as s:
        return current_label(s, task_id, store=ctx.store)


def replayed(ctx: ReviewContext, task_id: int):
    with ctx.session(readonly=True) as s:
        return replay_branch(ctx.store, s, get_task(s, task_id), None)


def n_revisions(ctx: ReviewContext) -> int:
    with ctx.session(readonly=True) as s:
        return int(s.scalar(select(func.count(Revision.id))))


def test_recomputed_label_equals_the_label_shown_after_each_save(ctx, users):
    disp = scene_disparity(1)
    disp[25, 25] = 9.0  # a spike inside the table region
    [task_id] = make_tasks(ctx, [disp])
    teacher = recomputed(ctx, task_id)
    assert teacher.source == "pseudo" and teacher.kind == DepthKind.RELATIVE_DISPARITY
    assert np.array_equal(teacher.depth, disp) and not teacher.ignore_mask.any()

    expected = LabelMap.from_prediction(disp, "relative_disparity")
    cam = Intrinsics.from_fov(W, H, 60.0)
    with ctx.session(readonly=True) as s:
        guide = guide_image(ctx.store, get_task(s, task_id).image, (H, W))
    for step, (action, payload, region) in enumerate(CORRECTIONS, start=1):
        result = save_correction(ctx, task_id=task_id, user=users["rev"],
                                 expected_version=version(ctx, task_id), action=action,
                                 payload=payload, region=region)
        again = recomputed(ctx, task_id)
        assert again.equals(result.label), f"step {step} ({action})"
        assert again.n_corrections == step and again.source == "corrected"
        assert replayed(ctx, task_id).equals(again)  # stored == recomputed from history
        expected = apply_correction(expected, action, payload, region, cam, guide=guide)
        assert again.label_map.equals(expected)
    final = recomputed(ctx, task_id)
    assert final.kind == DepthKind.METRIC_DEPTH  # anchors made it metric
    assert final.depth[40, 10] == pytest.approx(1.5, rel=1e-4)
    assert final.depth[40, 2] < final.depth[40, 60]  # the ordinal pair survives the anchors
    assert final.far_mask[0:4, 0:20].all() and not final.ignore_mask[0:6, 0:10].any()
    assert final.ignore_mask[0:6, 20:].all()
    assert final.depth[25, 25] < 10 * np.nanmedian(final.depth)  # the spike was filled
    # a fresh engine (another process, say) recomputes the same label
    with ReviewContext.from_settings(ctx.settings) as other:
        assert recomputed(other, task_id).equals(final)


def test_impossible_correction_is_refused_and_nothing_saved(ctx, users):
    [task_id] = make_tasks(ctx, [scene_disparity(3)])
    blobs_before = sorted(ctx.store.iter_files())
    with pytest.raises(InputError, match="contradict"):
        save_correction(ctx, task_id=task_id, user=users["rev"], expected_version=0,
                        action="ordinal", payload={"pairs": [[5, 5, 50, 40], [50, 40, 5, 5]]})
    with pytest.raises(InputError, match="empty"):
        save_correction(ctx, task_id=task_id, user=users["rev"], expected_version=0,
                        action="plane_fill", region=np.zeros((H, W), bool))
    assert n_revisions(ctx) == 0 and version(ctx, task_id) == 0
    assert sorted(ctx.store.iter_files()) == blobs_before


def test_stale_save_is_refused_and_loses_nothing(ctx, users):
    [task_id] = make_tasks(ctx, [scene_disparity(4)])
    first = save_correction(ctx, task_id=task_id, user=users["rev"], expected_version=0,
                            action="mask", region=box(slice(0, 8), slice(None)))
    files = sorted(ctx.store.iter_files())
    with pytest.raises(StaleRevisionError, match="reload the task"):
        save_correction(ctx, task_id=task_id, user=users["rev2"], expected_version=0,
                        action="far_fill", region=box(slice(0, 3), slice(None)))
    assert n_revisions(ctx) == 1 and recomputed(ctx, task_id).equals(first.label)
    assert sorted(ctx.store.iter_files()) == files  # refused before the region was written
    with pytest.raises(ClaimedError, match="claimed by another reviewer"):  # rev holds it
        save_correction(ctx, task_id=task_id, user=users["rev2"],
                        expected_version=first.task_version, action="far_fill",
                        region=box(slice(0, 3), slice(None)))
    second = save_correction(ctx, task_id=task_id, user=users["rev"],
                             expected_version=first.task_version, action="far_fill",
                             region=box(slice(0, 3), slice(None)))
    assert recomputed(ctx, task_id).equals(second.label) and second.task_version == 2


def test_viewer_cannot_correct(ctx, users):
    [task_id] = make_tasks(ctx, [scene_disparity(5)])
    files = sorted(ctx.store.iter_files())
    with pytest.raises(PermissionDeniedError):
        save_correction(ctx, task_id=task_id, user=users["view"], expected_version=0,
                        action="mask", region=box(slice(0, 8), slice(None)))
    assert n_revisions(ctx) == 0 and sorted(ctx.store.iter_files()) == files


def test_old_revisions_recompute_with_their_rules_version(ctx, users):
    """A correction made under rules 1 (global tilt) keeps its label; today's rules differ."""
    disp = scene_disparity(6)
    [task_id] = make_tasks(ctx, [disp])
    pair = {"pairs": [[2, 40, 60, 40]]}
    save_correction(ctx, task_id=task_id, user=users["rev"], expected_version=0,
                    action="ordinal", payload=pair)
    with ctx.session() as s:  # pretend it was made by the old rules, before labels were stored
        rev = s.scalars(select(Revision)).one()
        rev.rules_version, rev.label_blob_sha256, rev.flags_blob_sha256 = 1, None, None
    old = recomputed(ctx, task_id)
    cam = Intrinsics.from_fov(W, H, 60.0)
    tilt = apply_correction(LabelMap.from_prediction(disp, "relative_disparity"), "ordinal",
                            pair, None, cam, rules_version=1)
    assert old.label_map.equals(tilt)
    from depthweb.services.review import reapply_rules

    new_version = reapply_rules(ctx, task_id=task_id, user=users["admin"], expected_version=1)
    again = recomputed(ctx, task_id)
    assert new_version == 2 and not again.label_map.equals(tilt)
    with pytest.raises(PermissionDeniedError):
        reapply_rules(ctx, task_id=task_id, user=users["rev"], expected_version=2)


def test_saves_over_the_limits_are_refused_with_one_sentence(ctx, users):
    from depthweb.services.review import LIMITS

    [task_id] = make_tasks(ctx, [scene_disparity(7)])
    too_many = [[1 + i % 60, 2, 1 + i % 60, 45] for i in range(LIMITS["pairs_per_save"] + 1)]
    with pytest.raises(InputError, match=r"^A save holds at most \d+ ordinal pairs"):
        save_correction(ctx, task_id=task_id, user=users["rev"], expected_version=0,
                        action="ordinal", payload={"pairs": too_many})
    assert n_revisions(ctx) == 0


@pytest.mark.parametrize("arr", [
    np.linspace(0.5, 2.0, 48 * 64, dtype=np.float32).reshape(48, 64),
    np.asfortranarray(np.arange(12.0).reshape(3, 4)),
    np.arange(5, dtype=">i2"),
])
def test_read_array_readonly_is_the_same_array_without_a_copy(tmp_path, arr):
    """Pictures read the 7-megapixel teacher as a view of the file's bytes; a corrupt file is
    still refused (sha256) and a truncated one cannot pass as an array."""
    from types import SimpleNamespace

    from depthweb.services.review.labels import read_array
    from depthweb.store import BlobStore
    from depthweb.store.errors import BrokenTaskError

    store = BlobStore(tmp_path)
    ref = store.put_array(arr)
    row = SimpleNamespace(sha256=ref.sha256, path=ref.path, nbytes=ref.nbytes, shape=ref.shape,
                          dtype=ref.dtype)
    view = read_array(store, row, "teacher prediction", readonly=True)
    full = read_array(store, row, "teacher prediction")
    assert np.array_equal(view, arr) and np.array_equal(full, arr) and view.dtype == arr.dtype
    assert not view.flags.writeable and full.flags.writeable
    path = tmp_path / ref.path
    path.write_bytes(path.read_bytes()[:-2])
    with pytest.raises(BrokenTaskError, match="fails its checksum"):
        read_array(store, row, "teacher prediction", readonly=True)
