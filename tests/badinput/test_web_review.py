"""The corpus through the review and admin endpoints of the launched app (gradio_client, logged
in): a bad request gets an ``AppError`` with one sentence (or, for imports, a report naming each
refused file) and the database and blob store are exactly as before; the next good request
works; what is stored is exactly what was given."""

from __future__ import annotations

import math

import pytest
from sqlalchemy import select

from tests.badinput.conftest import first_task
from tests.badinput.corpus import Handled, Refused, cases
from tests.badinput.corpus_review import IMPORTED_ALONGSIDE
from tests.badinput.harness import assert_sentence, store_snapshot

pytestmark = pytest.mark.slow
ANCHOR_HEADERS = ["x (px)", "y (px)", "true depth (m)"]
VERSION, STATUS = 1, 13  # output positions of the review endpoints (see review_tab.build)


def _call(client, api: str, *args):
    from gradio_client.exceptions import AppError

    try:
        return client.predict(*args, api_name=api), None
    except AppError as err:
        return None, err


@pytest.fixture(autouse=True)
def _logged_in(web):
    """Both clients log in before any test takes a snapshot (a login writes to the database)."""
    web.login("rev", download=False)
    web.login("boss", download=False)


def still_serving(web) -> None:
    """A good request right after the bad one: the admin overview answers."""
    out = web.login(download=False).predict("scenes", api_name="/admin_overview")
    assert "tasks" in out[-1]


def _refused_unchanged(expect, err, before, web_ctx) -> None:
    assert isinstance(expect, Refused), f"expected it handled, got {err}"
    assert_sentence(str(err), expect.needle)
    assert store_snapshot(web_ctx) == before


@pytest.mark.parametrize("case", cases(("note", "approve-note"), "web"), ids=repr)
def test_notes(case, tmp_path, web, web_ctx):
    from depthweb.store.models import Revision

    text = case.build(tmp_path)
    client = web.login("rev", download=False)  # before the snapshot: a login is a write
    task_id, version = first_task(web_ctx)
    before = store_snapshot(web_ctx)
    api = "/review_note" if case.kind == "note" else "/review_approve"
    out, err = _call(client, api, task_id, version, text)
    expect = case.outcome("web")
    if err is not None:
        _refused_unchanged(expect, err, before, web_ctx)
    else:
        assert isinstance(expect, Handled), f"{case.id} should be refused"
        assert out[VERSION] == version + 1 and out[STATUS].startswith("Saved: note")
        with web_ctx.session(readonly=True) as s:
            rev = s.scalars(select(Revision).where(Revision.task_id == task_id,
                                                   Revision.task_version == version + 1)).one()
            assert rev.payload == {"text": text}  # exactly what was typed
    still_serving(web)


@pytest.mark.parametrize("case", cases("review-anchors", "web"), ids=repr)
def test_anchors(case, tmp_path, web, web_ctx):
    # JSON has no NaN / Infinity: they travel as the text a user would type into the table
    rows = [[c if not isinstance(c, float) or math.isfinite(c) else str(c) for c in row]
            for row in case.build(tmp_path)]
    client = web.login("rev", download=False)
    task_id, version = first_task(web_ctx)
    before = store_snapshot(web_ctx)
    out, err = _call(client, "/review_save_anchors", task_id, version,
                     {"headers": ANCHOR_HEADERS, "data": rows})
    expect = case.outcome("web")
    if err is not None:
        _refused_unchanged(expect, err, before, web_ctx)
    else:
        assert isinstance(expect, Handled), f"{case.id} should be refused"
        assert out[VERSION] == version + 1 and out[STATUS].startswith("Saved: anchors")
    still_serving(web)


@pytest.mark.parametrize("case", cases("export-path", "web"), ids=repr)
def test_export_names(case, tmp_path, web, web_ctx):
    name = case.build(tmp_path)
    before = store_snapshot(web_ctx)
    out, err = _call(web.login(download=False), "/admin_export", "scenes", "best", name)
    expect = case.outcome("web")
    if err is not None:
        _refused_unchanged(expect, err, before, web_ctx)
        assert not (web.data_dir / "outside").exists()
        assert not (web.data_dir.parent / "b").exists()
    else:
        assert isinstance(expect, Handled), f"{case.id} should be refused"
        target = web.data_dir / "exports" / name
        assert str(target) in out and (target / "manifest.jsonl").is_file()
    still_serving(web)


def _import(web, paths, dataset: str):
    from gradio_client import handle_file

    return _call(web.login(download=False), "/admin_import",
                 [handle_file(str(p)) for p in paths], dataset)


def _report_lines(text: str) -> list[str]:
    return [line.removeprefix("- ") for line in text.splitlines() if line.startswith("- ")]


IMPORTED = ("zero-bytes", "truncated-jpeg", "svg-as-png", "header-bomb-jpeg", "aspect-2x400",
            "exif-rotated", "cmyk-jpeg", "one-pixel", "name-unicode", "name-250-chars")
"""Image files also sent through the admin upload (the decoder is the one /predict uses, where
every image case runs); every archive case is sent."""


@pytest.mark.parametrize("case", [c for c in cases(("image", "filename", "archive"), "web")
                                  if c.kind == "archive" or c.id in IMPORTED], ids=repr)
def test_import_files(case, tmp_path, web, web_ctx):
    from depthweb.store.models import Dataset, Image

    path = case.build(tmp_path)
    before = store_snapshot(web_ctx)
    out, err = _import(web, [path], "scenes")
    expect = case.outcome("import", "web")
    if err is not None:  # refused as a whole (an empty or unreadable zip)
        _refused_unchanged(expect, err, before, web_ctx)
    elif isinstance(expect, Refused):
        lines = _report_lines(out)
        assert lines and all(expect.needle.lower() in line.lower() for line in lines), out
        for line in lines:
            assert_sentence(line.split(": ", 1)[1], expect.needle)
        if case.id in IMPORTED_ALONGSIDE:
            with web_ctx.session(readonly=True) as s:
                names = s.scalars(select(Image.original_filename).join(Dataset).where(
                    Dataset.name == "scenes")).all()
            assert any(n.endswith(IMPORTED_ALONGSIDE[case.id]) for n in names)
        else:
            assert store_snapshot(web_ctx) == before
    else:
        assert "0 unreadable" in out and ("1 added" in out or "1 duplicates" in out), out
    still_serving(web)


@pytest.mark.parametrize("case", cases("dataset-name", "web"), ids=repr)
def test_dataset_names(case, tmp_path, web, web_ctx, good_photo):
    from depthweb.store.models import Dataset

    name = case.build(tmp_path)
    before = store_snapshot(web_ctx)
    out, err = _import(web, [good_photo], name)
    expect = case.outcome("web")
    if err is not None:
        _refused_unchanged(expect, err, before, web_ctx)
    else:
        assert isinstance(expect, Handled), f"{case.id} should be refused"
        assert "1 added" in out
        with web_ctx.session(readonly=True) as s:
            assert s.scalar(select(Dataset.name).where(Dataset.name == name)) == name
    still_serving(web)
