"""The server's two mounts: the Studio at ``/`` answers anyone, nothing of the review platform
at ``/review`` answers an anonymous caller, whatever route is asked.

The routes come from the assembled app itself (:func:`tests.security.routes.server_routes`:
the parent app and both mounts), so a route a later Gradio adds is probed too. The server is
the session's seeded one (``sec_server``: users in the database, review on).
"""

from __future__ import annotations

import httpx
import pytest

from tests.security.conftest import state_snapshot
from tests.security.endpoints import ROLES, STUDIO, arguments, make_case
from tests.security.probes import raw_get
from tests.security.routes import REVIEW_PREFIX, classify, server_routes

BODY = {"data": [1, 1, "x"], "event_id": "x", "session_hash": "x", "fn_index": 0,
        "trigger_id": None, "event_data": None, "prompt": "x", "hash": "x", "code": "x"}
BY_SECRET_ID = {"/gradio_api/reset", "/gradio_api/reset/", "/gradio_api/cancel",
                "/gradio_api/heartbeat/{session_hash}", "/gradio_api/startup-events",
                "/gradio_api/token", "/gradio_api/token/", "/gradio_api/stream/{event_id}",
                "/gradio_api/stream/{event_id}/close",
                "/gradio_api/stream/{session_hash}/{run}/{component_id}/playlist.m3u8",
                "/gradio_api/stream/{session_hash}/{run}/{component_id}/{segment_id}.{ext}",
                "/gradio_api/stream/{session_hash}/{run}/{component_id}/playlist-file"}
"""Review routes Gradio answers without login: they act only on an unguessable event id or
session hash (unknown ones: a no-op or 404) or say only that nobody is logged in."""
DISABLED = {"/gradio_api/runs", "/gradio_api/runs/"}
"""Run history, turned off for the review mount (nothing of it is kept in browsers)."""
REVIEW_WORDS = (b"review_", b"admin_", b"train_", b"nyu", b"seed-v1", b"$argon2")


@pytest.fixture(scope="module")
def routes(sec_server):
    """Every route of the server as ``sec_server`` assembles it (built here, not served)."""
    from depthweb.server.assembly import assemble
    from depthweb.ui import auth

    assembly = assemble(sec_server.settings())
    yield server_routes(assembly.app)
    auth.clear_review_cache()


def _anonymous(client: httpx.Client, method: str, path: str) -> tuple[int, bytes]:
    with client.stream(method, path, json=BODY if method == "POST" else None) as r:
        if "text/event-stream" in r.headers.get("content-type", ""):
            return r.status_code, b""  # a stream (heartbeat): only its status matters
        return r.status_code, r.read()


def test_every_route_of_both_mounts_is_classified(routes):
    kinds = {r.full_path: classify(r) for r in routes}  # raises for an unknown root route
    assert {"/review/gradio_api/queue/join", "/review/gradio_api/file={path_or_url:path}",
            "/gradio_api/queue/join", "/gradio_api/upload"} <= set(kinds)
    assert kinds["/review/gradio_api/queue/join"] == "login"
    assert kinds["/gradio_api/queue/join"] == "public"
    assert not [p for p, k in kinds.items() if k == "root"]  # password login: no root routes
    assert len([k for k in kinds.values() if k == "login"]) >= 40


def test_nothing_of_the_review_mount_answers_anonymous_callers(sec_server, routes, ctx):
    before = state_snapshot(ctx, sec_server.data_dir)
    wrong, probed = [], 0
    with httpx.Client(base_url=sec_server.studio_url, timeout=30) as anon:
        for route in (r for r in routes if r.mount == REVIEW_PREFIX):
            for method in route.methods:
                status, body = _anonymous(anon, method, route.url_path())
                probed += 1
                if route.path in DISABLED:
                    ok = status in (401, 403, 404)
                elif classify(route) == "login" and route.path not in BY_SECRET_ID:
                    ok = status in (401, 403)
                else:  # open: login page, assets, "nobody is logged in" answers
                    ok = status < 500 and not any(w in body for w in REVIEW_WORDS)
                if not ok:
                    wrong.append((method, route.full_path, status, body[:80]))
    assert not wrong, wrong
    assert probed >= 60
    assert state_snapshot(ctx, sec_server.data_dir) == before


def test_the_studio_answers_anyone_and_holds_no_review_endpoint(sec_server, login, tmp_path):
    from gradio_client import Client

    visitor = Client(sec_server.studio_url, verbose=False, analytics_enabled=False,
                     download_files=str(tmp_path / "dl"))
    named = set(visitor.view_api(return_format="dict", print_info=False)["named_endpoints"])
    assert named == STUDIO
    config = httpx.get(sec_server.studio_url + "config", timeout=30).json()
    apis = {d.get("api_name") for d in config["dependencies"]}
    assert not {a for a in apis if a and a.startswith(("review_", "admin_", "train_"))}
    review = set(login("view").view_api(return_format="dict", print_info=False)
                 ["named_endpoints"])
    assert review <= set(ROLES) and not review & STUDIO


@pytest.mark.parametrize("name", sorted(STUDIO))
def test_anonymous_studio_calls_answer_with_users_in_the_database(sec_server, ctx, tmp_path,
                                                                  name):
    from gradio_client import Client
    from sqlalchemy import func, select

    from depthweb.store.models import User

    with ctx.session(readonly=True) as s:
        assert s.scalar(select(func.count(User.id))) >= 4  # the review platform has users
    visitor = Client(sec_server.studio_url, verbose=False, analytics_enabled=False,
                     download_files=str(tmp_path / "dl"))
    from gradio_client.exceptions import AppError

    case = make_case(ctx, tmp_path, str(sec_server.teacher_weights))
    try:
        out = visitor.predict(*arguments(name, case), api_name=name)
    except AppError as err:  # the tiny random teacher predicts a constant map: /compare ran
        assert name == "/compare" and "every other model predicts a constant map" in str(err)
        return  # both models, for an anonymous caller, and said so in one sentence
    assert isinstance(out, tuple | list) and any(v not in (None, "", [], {}) for v in out)


def test_review_outputs_are_served_to_the_review_login_only(sec_server, http, ctx, tmp_path):
    """A photo the review platform sent to an admin: its copy in Gradio's temp dir is
    served through the review mount with the login cookie, never through the Studio."""
    case = make_case(ctx, tmp_path, str(sec_server.teacher_weights))
    boss = http("boss")
    r = boss.post("/gradio_api/run/review_open", json={"data": [case.task_id, None]})
    assert r.status_code == 200, r.text[:200]
    paths = [v["path"] for v in r.json()["data"] if isinstance(v, dict) and v.get("path")]
    assert paths and all("review-private" in p for p in paths)
    cookie = "; ".join(f"{k}={v}" for k, v in boss.cookies.items())
    for path in paths:
        assert raw_get(sec_server.url, f"/gradio_api/file={path}", cookie)[0] == 200
        assert raw_get(sec_server.url, f"/gradio_api/file={path}")[0] in (401, 403)
        assert raw_get(sec_server.studio_url, f"/gradio_api/file={path}")[0] in (403, 404)
