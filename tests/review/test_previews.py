"""Review previews (SQLite and PostgreSQL): pseudo-labelling writes the display-size photo and
teacher pictures of every task it creates, a page is shown from them without decoding the photo
or the prediction, a page without them makes them once for everyone, a damaged preview is made
again, a missing blob still sets the task aside, and ``depthweb db previews`` fills them in."""

from __future__ import annotations

import numpy as np
import pytest

from depthweb.services.review import ReviewContext, import_images, pseudo_label
from depthweb.services.review import page as page_mod
from depthweb.services.review import session as svc
from depthweb.services.review.picture_files import encode
from depthweb.services.review.previews import (
    photo_name,
    photo_picture,
    teacher_name,
    teacher_picture,
)
from depthweb.store import SYSTEM, BlobRef
from depthweb.store.errors import BrokenTaskError
from depthweb.store.repo import get_task
from depthweb.types import Intrinsics
from tests.review.conftest import TEACHER, make_tasks, scene_disparity


def task_names(ctx, task_id: int) -> tuple[str, str, BlobRef, BlobRef]:
    with ctx.session(readonly=True) as s:
        task = get_task(s, task_id)
        pred = task.prediction
        shape = tuple(pred.depth_blob.shape[:2])
        return (photo_name(task.image.sha256, shape), teacher_name(pred.depth_blob_sha256,
                                                                   pred.kind),
                BlobRef.from_row(task.image.blob), BlobRef.from_row(pred.depth_blob))


def as_jpeg(picture: np.ndarray) -> np.ndarray:
    """``picture`` after the preview's JPEG encoding and decoding."""
    import cv2

    bgr = cv2.imdecode(np.frombuffer(encode(picture, "jpeg"), np.uint8), cv2.IMREAD_COLOR)
    return bgr[..., ::-1]


def fresh(ctx: ReviewContext) -> ReviewContext:
    """A second context on the same database and data (another server process: nothing in
    memory, everything on disk)."""
    return ReviewContext.from_settings(ctx.settings)


def no_decoding(monkeypatch) -> None:
    def refuse(*_a, **_k):
        raise AssertionError("the page decoded a stored file")

    monkeypatch.setattr(page_mod, "image_rgb", refuse)
    monkeypatch.setattr(page_mod, "read_array", refuse)


def test_pseudo_labelling_writes_the_previews_and_pages_are_shown_from_them(
        ctx, users, image_folder, tiny_teacher, monkeypatch):
    import_images(ctx, image_folder(range(3), scene=True), dataset="d", user=SYSTEM)
    pseudo_label(ctx, "d", TEACHER, user=SYSTEM, weights=str(tiny_teacher), batch_size=2,
                 device="cpu", uncertainty="none")
    with ctx.session(readonly=True) as s:
        from sqlalchemy import select

        from depthweb.store.models import Task
        ids = list(s.scalars(select(Task.id).order_by(Task.id)))
    assert len(ids) == 3
    expected = {}
    for tid in ids:
        pname, tname, photo_ref, depth_ref = task_names(ctx, tid)
        for name, fmt in ((pname, "jpeg"), (tname, "jpeg"), (tname, "png")):
            assert ctx.previews.has(name, fmt), (tid, name, fmt)
        # what the page would have made from the stored files
        from depthweb.imaging import load_image
        rgb = load_image(ctx.store.get_bytes(photo_ref)).rgb
        depth = ctx.store.get_array(depth_ref)
        expected[tid] = (photo_picture(rgb, depth.shape),
                         teacher_picture(depth, "relative_disparity",
                                         Intrinsics.from_fov(depth.shape[1], depth.shape[0], 60),
                                         TEACHER))

    other = fresh(ctx)
    try:
        no_decoding(monkeypatch)
        seen = set()
        for _ in ids:
            page = svc.next_outcome(other, "rev", gold_every=0).page
            assert page is not None
            photo, teacher = expected[page.task_id]
            assert page.photo.shape == photo.shape
            # exactly the picture made from the photo itself, as its JPEG file shows it
            np.testing.assert_array_equal(page.photo, as_jpeg(photo))
            np.testing.assert_array_equal(page.teacher_picture, teacher)  # PNG: lossless
            np.testing.assert_array_equal(page.label_picture, teacher)
            for f in (page.photo_file, page.teacher_file, page.label_file):
                with open(f, "rb") as fh:
                    assert len(fh.read()) > 100
            seen.add(page.task_id)
            svc.approve_page(other, "rev", page.task_id, page.version, "")
        assert seen == set(ids)
    finally:
        other.close()


def test_a_page_without_previews_makes_them_once_for_everyone(ctx, users, monkeypatch):
    (tid,) = make_tasks(ctx, [scene_disparity(1, 96, 128)])
    pname, tname, _, _ = task_names(ctx, tid)
    assert not ctx.previews.has(pname, "jpeg") and not ctx.previews.has(tname, "png")
    first = svc.open_page(ctx, "rev", tid)
    assert ctx.previews.has(pname, "jpeg") and ctx.previews.has(tname, "png")
    assert ctx.previews.has(tname, "jpeg")

    other = fresh(ctx)
    try:
        no_decoding(monkeypatch)
        again = svc.open_page(other, "rev2", tid)
        np.testing.assert_array_equal(again.teacher_picture, first.teacher_picture)
        np.testing.assert_array_equal(again.photo, as_jpeg(first.photo))
    finally:
        other.close()


def test_a_damaged_preview_is_made_again(ctx, users):
    (tid,) = make_tasks(ctx, [scene_disparity(2)])
    first = svc.open_page(ctx, "rev", tid)
    pname, tname, _, _ = task_names(ctx, tid)
    for name, fmt in ((pname, "jpeg"), (tname, "png")):
        ctx.previews.path(name, fmt).write_bytes(b"\x89PNG not really")
    other = fresh(ctx)
    try:
        page = svc.open_page(other, "rev", tid)
        np.testing.assert_array_equal(page.teacher_picture, first.teacher_picture)
        assert page.photo.shape == first.photo.shape
        assert ctx.previews.read(tname, "png") is not None  # rewritten whole
        assert ctx.previews.read(pname, "jpeg") is not None
    finally:
        other.close()


@pytest.mark.parametrize("which", ["photo", "teacher"])
def test_previews_do_not_hide_a_missing_file(ctx, users, which):
    ids = make_tasks(ctx, [scene_disparity(i) for i in range(2)])
    top = ids[-1]
    svc.open_page(ctx, "rev", top)  # previews made
    pname, tname, photo_ref, depth_ref = task_names(ctx, top)
    assert ctx.previews.has(pname, "jpeg") and ctx.previews.has(tname, "png")
    ctx.store.path(photo_ref if which == "photo" else depth_ref).unlink()
    other = fresh(ctx)  # a process that would show the page from the previews alone
    try:
        with pytest.raises(BrokenTaskError, match="missing"):
            svc.open_page(other, "rev", top)
        with other.session(readonly=True) as s:
            task = get_task(s, top)
            assert task.status == "broken" and "missing" in task.broken_reason
    finally:
        other.close()


def test_db_previews_fills_in_the_missing_ones(ctx, users):
    from tests.review.test_cli_review import run_cli

    ids = make_tasks(ctx, [scene_disparity(i) for i in range(3)])
    names = [task_names(ctx, t)[:2] for t in ids]
    env = {"DEPTHWEB_DATA_DIR": str(ctx.settings.data_dir),
           "DEPTHWEB_DATABASE_URL": ctx.settings.resolved_database_url}
    proc = run_cli("db", "previews", env=env)
    assert proc.returncode == 0, proc.stderr
    assert "made the previews of 3 task(s); 0 task(s)" in proc.stdout
    for pname, tname in names:
        assert ctx.previews.has(pname, "jpeg") and ctx.previews.has(tname, "png")
    proc = run_cli("db", "previews", "--dataset", "scenes", env=env)
    assert proc.returncode == 0 and "made the previews of 0 task(s)" in proc.stdout
    # a task whose photo is gone is counted, and the exit status says so
    ctx.previews.path(names[1][0], "jpeg").unlink()
    ctx.store.path(task_names(ctx, ids[1])[2]).unlink()
    proc = run_cli("db", "previews", env=env)
    assert proc.returncode == 1
    assert "1 task(s) have a missing or corrupt file" in proc.stdout
