"""Missing and corrupted blobs (SQLite and PostgreSQL): the task is set aside as broken, the
queue, the export and other reviewers carry on, and ``db check`` names the task."""

from __future__ import annotations

from pathlib import Path

import pytest

from depthweb.services.review import export_dataset
from depthweb.services.review import session as svc
from depthweb.services.review.admin import check_store, overview
from depthweb.store import SYSTEM, BlobRef
from depthweb.store.errors import BrokenTaskError
from depthweb.store.repo import get_task
from tests.review.conftest import make_tasks, scene_disparity


def blob_path(ctx, task_id: int, which: str) -> Path:
    with ctx.session(readonly=True) as s:
        task = get_task(s, task_id)
        row = task.image.blob if which == "photo" else task.prediction.depth_blob
        return ctx.store.path(BlobRef.from_row(row))


def corrupt_same_size(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF  # inside the array data: np.load still reads it
    path.write_bytes(bytes(data))


def status(ctx, task_id: int) -> tuple[str, str | None]:
    with ctx.session(readonly=True) as s:
        task = get_task(s, task_id)
        return task.status, task.broken_reason


@pytest.fixture
def three(ctx, users) -> list[int]:
    """Three tasks; the last has the highest priority (it is handed out first)."""
    return make_tasks(ctx, [scene_disparity(i) for i in range(3)])


@pytest.mark.parametrize("damage", ["missing", "corrupt"])
@pytest.mark.parametrize("which", ["photo", "teacher"])
def test_a_bad_file_sets_the_task_aside_and_the_queue_carries_on(ctx, three, which, damage,
                                                                tmp_path):
    top = three[-1]
    path = blob_path(ctx, top, which)
    if damage == "missing":
        path.unlink()
    else:
        corrupt_same_size(path)

    out = svc.next_outcome(ctx, "rev", gold_every=0)
    assert out.page is not None and out.page.task_id == three[-2]  # the next one, not an error
    assert f"Task(s) {top} set aside" in out.note
    st, why = status(ctx, top)
    assert st == "broken" and ("missing" in why if damage == "missing" else "checksum" in why)
    # another reviewer is not stopped either, and never gets the broken task
    other = svc.next_page(ctx, "rev2", gold_every=0)
    assert other is not None and other.task_id == three[0]
    with pytest.raises(BrokenTaskError, match="set aside"):
        svc.open_page(ctx, "admin", top)
    # the admin sees it, with the reason
    broken = overview(ctx, "admin", None).broken
    assert [row[0] for row in broken] == [top]
    # the export carries on without it
    report = export_dataset(ctx, "scenes", tmp_path / "exp", user=SYSTEM)
    assert report.count == 2
    # db check names the task (and finds nothing else)
    check = check_store(ctx, mark_broken=False)
    assert [p.problem for p in check.problems] == [damage]
    assert check.problems[0].task_ids == (top,) and check.broken_tasks == [top]


def test_export_verifies_what_it_copies(ctx, three, tmp_path):
    """A file corrupted without changing its size after the task was last opened: the export
    checks every file it copies, leaves that task out and says so."""
    victim = three[0]
    corrupt_same_size(blob_path(ctx, victim, "teacher"))
    report = export_dataset(ctx, "scenes", tmp_path / "exp", user=SYSTEM)
    assert report.count == 2 and report.broken == [victim]
    assert "left out because a file is missing or corrupt" in report.summary()
    assert status(ctx, victim)[0] == "broken"


def test_db_check_marks_and_the_cli_reports(ctx, three, monkeypatch, capsys):
    from depthweb.cli.review import cmd_db_check

    victim = three[1]
    blob_path(ctx, victim, "photo").unlink()
    monkeypatch.setattr("depthweb.cli.review._context", lambda: _Same(ctx))
    rc = cmd_db_check(type("A", (), {"no_mark": False})())
    out = capsys.readouterr().out
    assert rc == 1 and f"task(s) {victim}" in out and "1 task(s) affected" in out
    assert status(ctx, victim)[0] == "broken"
    assert check_store(ctx).broken_tasks == [victim]


def test_export_says_how_many_images_are_still_unlabelled(ctx, three, tmp_path):
    from depthweb.services.review.importer import encode_png
    from depthweb.store.repo import add_image, require_dataset
    from tests.review.conftest import smooth_image

    photo = ctx.store.put_bytes(encode_png(smooth_image(7)), ".png")
    with ctx.session() as s:  # imported, not yet pseudo-labelled (a job still running)
        add_image(session=s, user=SYSTEM, dataset_id=require_dataset(s, "scenes").id,
                  blob=photo, store=ctx.store, width=64, height=48, original_filename="new.png")
    report = export_dataset(ctx, "scenes", tmp_path / "exp", user=SYSTEM)
    assert report.unlabelled == 1 and report.count == 3
    assert "1 image(s) of the dataset are still unlabelled" in report.summary()


class _Same:
    """The test's context, not closed by the command."""

    def __init__(self, ctx) -> None:
        self.ctx = ctx

    def __enter__(self):
        return self.ctx

    def __exit__(self, *exc) -> None:
        return None
