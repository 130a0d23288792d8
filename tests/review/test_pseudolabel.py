"""Pseudo-labelling: every image labelled once, re-runs add nothing, uncertainty orders the
queue; the disagreement score itself; on SQLite and PostgreSQL."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import select

from depthweb.errors import InputError, UnknownModelError
from depthweb.services.review import disagreement, import_images, pseudo_label
from depthweb.store import SYSTEM, BlobRef
from depthweb.store.models import Image, Prediction, Task
from depthweb.store.repo import add_image, next_task
from depthweb.types import DepthKind
from tests.builders import build_tiny_depth_anything
from tests.review.conftest import TEACHER


def rows(ctx, model) -> list:
    with ctx.session(readonly=True) as s:
        return list(s.scalars(select(model).order_by(model.id)))


def test_every_image_labelled_once_and_queue_ordered_by_uncertainty(
    ctx, users, image_folder, tiny_teacher
):
    import_images(ctx, image_folder(range(5), scene=True), dataset="d", user=SYSTEM)
    calls = []
    report = pseudo_label(ctx, "d", TEACHER, user=SYSTEM, weights=str(tiny_teacher),
                          batch_size=2, device="cpu",
                          progress=lambda d, t, n: calls.append((d, t)))
    assert (report.labelled, report.already_done, report.failed) == (5, 0, [])
    assert calls == [(i, 5) for i in range(1, 6)]
    preds, tasks = rows(ctx, Prediction), rows(ctx, Task)
    assert len(preds) == len(tasks) == 5
    assert {p.image_id for p in preds} == {i.id for i in rows(ctx, Image)}
    assert all(p.kind == "relative_disparity" and p.weights == str(tiny_teacher) for p in preds)
    by_pred = {p.id: p for p in preds}
    for task in tasks:
        unc = by_pred[task.prediction_id].uncertainty
        assert unc is not None and unc >= 0 and task.priority == pytest.approx(unc)
    assert len({round(t.priority, 9) for t in tasks}) == 5  # the score tells images apart
    with ctx.session(readonly=True) as s:
        for p in preds:
            im = s.get(Image, p.image_id)
            depth = ctx.store.get_array(BlobRef.from_row(s.get(Prediction, p.id).depth_blob))
            assert depth.shape == (im.height, im.width) and depth.dtype == np.float32

    again = pseudo_label(ctx, "d", TEACHER, user=SYSTEM, weights=str(tiny_teacher),
                         device="cpu")
    assert (again.labelled, again.already_done) == (0, 5)
    assert len(rows(ctx, Prediction)) == len(rows(ctx, Task)) == 5

    with ctx.session() as s:
        first = next_task(session=s, user=users["rev"], gold_every=0)
    assert first.priority == max(t.priority for t in tasks)


def test_resume_after_a_partial_run_and_new_images(ctx, image_folder, tiny_teacher):
    import_images(ctx, image_folder(range(3)), dataset="d", user=SYSTEM)
    part = pseudo_label(ctx, "d", TEACHER, user=SYSTEM, weights=str(tiny_teacher),
                        uncertainty="none", limit=2, device="cpu")
    assert (part.labelled, part.already_done) == (2, 0)
    import_images(ctx, image_folder(range(3, 5)), dataset="d", user=SYSTEM)
    rest = pseudo_label(ctx, "d", TEACHER, user=SYSTEM, weights=str(tiny_teacher),
                        uncertainty="none", device="cpu")
    assert (rest.labelled, rest.already_done) == (3, 2)
    assert all(t.priority == 0.0 for t in rows(ctx, Task)) and len(rows(ctx, Task)) == 5


def test_unreadable_stored_image_is_reported_and_the_rest_labelled(ctx, image_folder,
                                                                   tiny_teacher):
    import_images(ctx, image_folder(range(2)), dataset="d", user=SYSTEM)
    junk = ctx.store.put_bytes(b"definitely not a png", ".png")
    with ctx.session() as s:
        ds_id = rows(ctx, Image)[0].dataset_id
        add_image(session=s, user=SYSTEM, dataset_id=ds_id, blob=junk, store=ctx.store,
                  width=8, height=8, original_filename="junk.png")
    report = pseudo_label(ctx, "d", TEACHER, user=SYSTEM, weights=str(tiny_teacher),
                          uncertainty="none", device="cpu")
    assert report.labelled == 2 and [n for n, _ in report.failed] == ["junk.png"]


def test_second_model_uncertainty(ctx, image_folder, tiny_teacher, tmp_path):
    second = build_tiny_depth_anything(tmp_path / "second", version=1)
    import_images(ctx, image_folder(range(2), scene=True), dataset="d", user=SYSTEM)
    report = pseudo_label(ctx, "d", TEACHER, user=SYSTEM, weights=str(tiny_teacher),
                          uncertainty="second-model:depth-anything-small",
                          second_weights=str(second), device="cpu")
    assert report.labelled == 2 and all(u > 0 for u in report.uncertainties)


def test_bad_options_fail_before_any_work(ctx, image_folder, tiny_teacher, users):
    import_images(ctx, image_folder(range(1)), dataset="d", user=SYSTEM)
    kw = {"user": SYSTEM, "weights": str(tiny_teacher), "device": "cpu"}
    with pytest.raises(InputError, match="Unknown uncertainty"):
        pseudo_label(ctx, "d", TEACHER, uncertainty="vibes", **kw)
    with pytest.raises(UnknownModelError):
        pseudo_label(ctx, "d", "depth-anything-v9", **kw)
    with pytest.raises(InputError, match="batch-size"):
        pseudo_label(ctx, "d", TEACHER, batch_size=0, **kw)
    with pytest.raises(Exception, match="reviewer role"):
        pseudo_label(ctx, "d", TEACHER, **{**kw, "user": users["rev"]})
    assert rows(ctx, Prediction) == []


@pytest.mark.parametrize("seed", [0, 1])
def test_disagreement_is_zero_up_to_scale_and_shift_and_grows_with_noise(seed):
    rng = np.random.default_rng(seed)
    disp = rng.uniform(0.2, 2.0, (30, 40))
    disp[0, 0] = np.nan
    disp_kind = DepthKind.RELATIVE_DISPARITY
    assert disagreement(disp, disp_kind, 3.0 * disp - 0.1, disp_kind) == pytest.approx(0, abs=1e-9)
    assert disagreement(disp, disp_kind, 1.0 / disp, DepthKind.METRIC_DEPTH) == pytest.approx(
        0, abs=1e-9)  # another model's metric depth is compared as inverse depth
    scores = [disagreement(disp, disp_kind, disp + rng.normal(0, s, disp.shape), disp_kind)
              for s in (0.01, 0.05, 0.2)]
    assert 0 < scores[0] < scores[1] < scores[2]
    assert disagreement(disp, disp_kind, np.ones_like(disp), disp_kind) == 1.0


def test_an_image_whose_prediction_file_is_missing_is_labelled_again(ctx, image_folder,
                                                                     tiny_teacher):
    import_images(ctx, image_folder(range(3), scene=True), dataset="d", user=SYSTEM)
    kw = {"user": SYSTEM, "weights": str(tiny_teacher), "device": "cpu", "uncertainty": "none"}
    assert pseudo_label(ctx, "d", TEACHER, **kw).labelled == 3
    before = {p.image_id: (p.id, p.depth_blob_sha256) for p in rows(ctx, Prediction)}
    lost = rows(ctx, Prediction)[1]
    with ctx.session(readonly=True) as s:
        lost_ref = BlobRef.from_row(s.get(Prediction, lost.id).depth_blob)
    ctx.store.path(lost_ref).unlink()
    with ctx.session(readonly=True) as s:
        assert ctx.store.missing(s) == [lost_ref.sha256]

    again = pseudo_label(ctx, "d", TEACHER, **kw)
    assert (again.labelled, again.relabelled, again.already_done) == (0, 1, 2)
    assert "1 labelled again" in again.summary()
    after = {p.image_id: (p.id, p.depth_blob_sha256) for p in rows(ctx, Prediction)}
    assert after.keys() == before.keys() and len(rows(ctx, Task)) == 3
    assert {i: v[0] for i, v in after.items()} == {i: v[0] for i, v in before.items()}
    with ctx.session(readonly=True) as s:
        assert ctx.store.missing(s) == []
        depth = ctx.store.get_array(BlobRef.from_row(s.get(Prediction, lost.id).depth_blob),
                                    verify=True)
    assert depth.shape == (120, 160) and np.isfinite(depth).any()
    assert pseudo_label(ctx, "d", TEACHER, **kw).relabelled == 0  # nothing missing any more
