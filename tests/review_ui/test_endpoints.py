"""The review endpoints called directly with gradio_client against the launched app: login is
required, a viewer cannot change anything (the database proves it), a stale save is refused
and reported, and a painted layer sent to ``review_save_mask`` becomes the stored region."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select

from depthweb.store import BlobRef
from depthweb.store.models import Review, Revision, Task
from tests.review_ui.conftest import db_snapshot
from tests.review_ui.server import PASSWORD

REVIEW_APIS = ("review_next", "review_open", "review_approve", "review_reject",
               "review_save_mask", "review_fill", "review_save_anchors", "review_save_ordinal",
               "review_note")
ADMIN_APIS = ("admin_overview", "admin_adjudicate", "admin_gold", "admin_users",
              "admin_add_user", "admin_set_user", "admin_import", "admin_pseudo_label",
              "admin_export")
ANCHORS = ["x (px)", "y (px)", "true depth (m)"]
PAIRS = ["closer x", "closer y", "farther x", "farther y"]
# Output positions of every review endpoint (see review_tab.build).
TASK, VERSION, INFO, WHO, STATUS = 0, 1, 2, 9, 13


def layer_png(path, shape: tuple[int, int], box: tuple[int, int, int, int]) -> str:
    """An RGBA brush layer (h, w) with an opaque magenta rectangle (x0, y0, x1, y1)."""
    h, w = shape
    rgba = np.zeros((h, w, 4), np.uint8)
    x0, y0, x1, y1 = box
    rgba[y0:y1, x0:x1] = (255, 0, 255, 255)
    Image.fromarray(rgba, "RGBA").save(path)
    return str(path)


def editor_value(tmp_path, shape, box):
    from gradio_client import handle_file

    layer = layer_png(tmp_path / "layer.png", shape, box)
    return {"background": None, "layers": [handle_file(layer)], "composite": None}


def test_every_review_and_admin_action_is_a_named_endpoint(login):
    names = set(login("rev2").view_api(return_format="dict", print_info=False)
                ["named_endpoints"])
    assert {f"/{n}" for n in REVIEW_APIS + ADMIN_APIS} <= names


def test_the_app_refuses_anonymous_clients_and_wrong_passwords(review_server):
    from gradio_client import Client
    from gradio_client.exceptions import AuthenticationError

    with pytest.raises(AuthenticationError):
        Client(review_server.url, verbose=False)
    with pytest.raises(ValueError, match="Could not login"):
        Client(review_server.url, auth=("rev2", "not the password"), verbose=False)
    for path in ("gradio_api/call/review_approve", "gradio_api/queue/join"):
        r = httpx.post(review_server.url + path, json={"data": [1, 0, ""]}, timeout=10)
        assert r.status_code in (401, 403), (path, r.status_code)
    assert "not the password" not in review_server.log()  # passwords are never logged


def test_a_viewer_cannot_save_even_by_calling_the_endpoints(login, ctx, tmp_path):
    from gradio_client.exceptions import AppError

    with ctx.session(readonly=True) as s:
        task = s.scalars(select(Task).order_by(Task.id)).first()
        task_id, version = task.id, task.version
        shape = tuple(task.prediction.depth_blob.shape)
    viewer = login("view")
    opened = viewer.predict(task_id, api_name="/review_open")  # looking is allowed
    assert opened[TASK] == task_id and opened[VERSION] == version
    before = db_snapshot(ctx)
    calls = [
        ("/review_next", ("",)),
        ("/review_approve", (task_id, version, "looks fine")),
        ("/review_reject", (task_id, version, ["sky"], "")),
        ("/review_save_mask", (task_id, version, editor_value(tmp_path, shape, (5, 5, 60, 40)),
                               "union")),
        ("/review_fill", (task_id, version, editor_value(tmp_path, shape, (5, 5, 60, 40)),
                          "far")),
        ("/review_save_anchors", (task_id, version, {"headers": ANCHORS,
                                                     "data": [[10, 10, 2.0]]})),
        ("/review_save_ordinal", (task_id, version, {"headers": PAIRS,
                                                     "data": [[10, 10, 50, 50]]})),
        ("/review_note", (task_id, version, "viewer note")),
        ("/admin_users", ()),
        ("/admin_export", ("nyu", "best", "viewer-export")),
    ]
    for api, args in calls:
        with pytest.raises(AppError) as err:
            viewer.predict(*args, api_name=api)
        assert "viewer role" in str(err.value), (api, str(err.value))
    assert db_snapshot(ctx) == before  # versions, revisions, reviews, blobs, exports


def test_a_stale_save_is_refused_reported_and_reloaded(login, ctx):
    reviewer, admin = login("rev2"), login("boss")
    page = reviewer.predict("wild", api_name="/review_next")
    task_id, version = page[TASK], page[VERSION]
    assert "yours" in page[STATUS]
    admin.predict(task_id, version, "checked by the admin first", api_name="/review_note")

    stale = reviewer.predict(task_id, version, "approve on the old version",
                             api_name="/review_approve")
    assert stale[STATUS].startswith("Not saved") and stale[VERSION] == version + 1
    assert stale[TASK] == task_id
    with ctx.session(readonly=True) as s:
        assert s.scalars(select(Review).where(Review.task_id == task_id)).all() == []
        assert s.get(Task, task_id).status == "in_review"

    done = reviewer.predict(task_id, stale[VERSION], "", api_name="/review_approve")
    assert done[STATUS].startswith(f"Saved: approve on task {task_id}")
    with ctx.session(readonly=True) as s:
        actions = [r.action for r in s.scalars(select(Revision).where(
            Revision.task_id == task_id).order_by(Revision.task_version))]
        assert actions == ["note", "approve"] and s.get(Task, task_id).status == "approved"


def test_a_painted_layer_becomes_the_stored_ignore_region(login, ctx, tmp_path):
    reviewer = login("rev2")
    page = reviewer.predict("wild", api_name="/review_next")
    task_id, version = page[TASK], page[VERSION]
    with ctx.session(readonly=True) as s:
        h, w = s.get(Task, task_id).prediction.depth_blob.shape
    # The layer comes at display size (here the label's) and is resized to the label.
    value = editor_value(tmp_path, (h, w), (w // 4, h // 4, w // 2, h // 2))
    saved = reviewer.predict(task_id, version, value, "union", api_name="/review_save_mask")
    assert saved[STATUS].startswith("Saved: ignore mask") and saved[VERSION] == version + 1
    assert "corrected" in saved[INFO]
    with ctx.session(readonly=True) as s:
        rev = s.scalars(select(Revision).where(Revision.task_id == task_id,
                                               Revision.action == "mask")).one()
        region = ctx.store.get_array(BlobRef.from_row(rev.blob))
    expected = np.zeros((h, w), bool)
    expected[h // 4:h // 2, w // 4:w // 2] = True
    assert region.shape == (h, w) and np.array_equal(region, expected)

    half = editor_value(tmp_path, (h // 2, w // 2), (0, 0, w // 4, h // 4))  # another size
    again = reviewer.predict(task_id, saved[VERSION], half, "replace",
                             api_name="/review_save_mask")
    assert again[VERSION] == version + 2
    with ctx.session(readonly=True) as s:
        rev = s.scalars(select(Revision).where(Revision.task_id == task_id,
                                               Revision.action == "mask")
                        .order_by(Revision.task_version.desc())).first()
        region = ctx.store.get_array(BlobRef.from_row(rev.blob))
    assert region.shape == (h, w) and region[: h // 2 - 2, : w // 2 - 2].all()
    assert not region[h // 2 + 2:].any() and not region[:, w // 2 + 2:].any()

    filled = reviewer.predict(task_id, again[VERSION], value, "plane", api_name="/review_fill")
    assert filled[STATUS].startswith("Saved: plane fill") and filled[VERSION] == version + 3
    pairs = {"headers": PAIRS, "data": [[w // 2, h - 20, w // 2, 20]]}  # bottom is closer
    ordered = reviewer.predict(task_id, filled[VERSION], pairs, api_name="/review_save_ordinal")
    assert ordered[STATUS].startswith("Saved: ordinal pairs")
    with ctx.session(readonly=True) as s:
        actions = [r.action for r in s.scalars(select(Revision).where(
            Revision.task_id == task_id).order_by(Revision.task_version))]
    assert actions[-4:] == ["mask", "mask", "plane_fill", "ordinal"]
    assert [row[3] for row in ordered[7]["data"]][-2:] == ["plane_fill", "ordinal"]


def test_the_reviewer_account_name_comes_from_the_login_not_the_request(login, ctx):
    """Whatever a client sends, the revision's author is the logged-in user."""
    reviewer = login("rev")
    with ctx.session(readonly=True) as s:
        task = s.scalars(select(Task).where(Task.status == "new").order_by(Task.id)).first()
        task_id, version = task.id, task.version
    out = reviewer.predict(task_id, version, "written by rev", api_name="/review_note")
    assert out[VERSION] == version + 1 and "Logged in as **rev**" in out[WHO]
    with ctx.session(readonly=True) as s:
        rev = s.scalars(select(Revision).where(Revision.task_id == task_id)
                        .order_by(Revision.task_version.desc())).first()
        assert rev.author.name == "rev" and rev.payload == {"text": "written by rev"}
    assert PASSWORD not in reviewer.predict(task_id, api_name="/review_open")[INFO]


def test_admin_imports_pseudo_labels_and_exports_through_the_endpoints(
    login, review_server, shared_data
):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    photo = handle_file(str(shared_data / "wild" / "jonathan-borba-CnthDZXCdoY-unsplash.jpg"))
    with pytest.raises(AppError, match="reviewer role"):
        login("rev2").predict([photo], "uploads", api_name="/admin_import")
    admin = login("boss")
    imported = admin.predict([photo, photo], "uploads", api_name="/admin_import")
    assert "1 added, 1 duplicates skipped, 0 unreadable" in imported
    labelled = admin.predict("uploads", "depth-anything-v2-small",
                             str(review_server.teacher_weights), 2, "flip", 0,
                             api_name="/admin_pseudo_label")
    assert "1 labelled" in labelled and "0 failed" in labelled
    exported = admin.predict("uploads", "best", "uploads-v1", api_name="/admin_export")
    target = review_server.data_dir / "exports" / "uploads-v1"
    assert str(target) in exported
    rows = [json.loads(x) for x in (target / "manifest.jsonl").read_text().splitlines()]
    assert [(r["source"], r["status"], r["dataset"]) for r in rows] == [
        ("pseudo", "unreviewed", "uploads")]
    with pytest.raises(AppError, match="plain name"):
        admin.predict("uploads", "best", "../outside", api_name="/admin_export")
    overview = admin.predict("uploads", api_name="/admin_overview")
    assert dict(overview[1]["data"])["new"] == 1
