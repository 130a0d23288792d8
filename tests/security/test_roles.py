"""Every endpoint of the review app enforces its role on the server.

The endpoints come from the running app (``view_api``), so a new one fails
:func:`test_every_named_endpoint_is_classified` until it is added to ``endpoints.ROLES``. Each is
called directly: anonymously over every HTTP route Gradio 6.31 has for running a function
(``/gradio_api/call``, ``/call/v2``, ``/run``, ``/api``, ``/queue/join`` by ``fn_index``), as a
viewer and, for admin endpoints, as a reviewer, with arguments that would succeed for the right
role. Each time the database, blob store, exports, students registry and runs are unchanged.
Handlers without an API name (``.load``, ``.select``, ``.success`` ...) are called by
``fn_index`` through the queue as a viewer and a reviewer as well.
"""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from tests.security.conftest import state_snapshot
from tests.security.endpoints import (
    ADMIN,
    PUBLIC,
    REVIEWER,
    ROLES,
    SPACE_ONLY,
    arguments,
    make_case,
)

RUN_ROUTES = ("/gradio_api/call/{}", "/gradio_api/call/v2/{}", "/gradio_api/run/{}",
              "/gradio_api/api/{}")
ADMIN_ONLY_TEXT = ("seed-v1", "$argon2", "mallory")  # an export name, hashes, a new user


@pytest.fixture(scope="module")
def named(login) -> dict:
    return login("boss").view_api(return_format="dict", print_info=False)["named_endpoints"]


@pytest.fixture(scope="module")
def dependencies(http) -> list[dict]:
    """Every event handler of the app (named or not), from the logged-in config."""
    return http("boss").get("/config").json()["dependencies"]


def test_every_named_endpoint_is_classified(named):
    unclassified = sorted(set(named) - set(ROLES))
    assert not unclassified, f"classify these endpoints in tests/security/endpoints.py: " \
                             f"{unclassified}"
    assert set(ROLES) - set(named) == SPACE_ONLY  # the table names no endpoint that is gone
    assert {ROLES[n] for n in named} == {PUBLIC, REVIEWER, ADMIN}


def test_anonymous_clients_reach_nothing(sec_server, http, named, dependencies, ctx):
    before = state_snapshot(ctx, sec_server.data_dir)
    anon = http(None)
    forged = httpx.Client(base_url=sec_server.url, timeout=30,
                          cookies={f"access-token-{k}": "forged" for k in ("x", "unsecure-x")})
    refused = []
    for name in named:
        for route in RUN_ROUTES:
            r = anon.post(route.format(name.lstrip("/")), json={"data": [1, 1, "x"]})
            refused.append((route.format(name), r.status_code))
    for dep in dependencies:
        body = {"data": [None] * len(dep["inputs"]), "fn_index": dep["id"],
                "session_hash": uuid.uuid4().hex, "trigger_id": None, "event_data": None}
        r = anon.post("/gradio_api/queue/join", json=body)
        refused.append((f"queue/join fn_index={dep['id']}", r.status_code))
        r = forged.post("/gradio_api/queue/join", json=body)
        refused.append((f"queue/join fn_index={dep['id']} forged cookie", r.status_code))
    for path in ("/gradio_api/queue/data?session_hash=x", "/gradio_api/call/review_note/x",
                 "/config", "/gradio_api/info", "/gradio_api/openapi.json"):
        refused.append((path, anon.get(path).status_code))
    forged.close()
    wrong = [(path, code) for path, code in refused if code not in (401, 403)]
    assert not wrong, wrong
    assert len(refused) >= 4 * len(named) + 2 * len(dependencies)
    assert state_snapshot(ctx, sec_server.data_dir) == before


def _refusals(client, names, case) -> dict[str, str]:
    """``name -> error message`` for every call that raised (successful calls map to "")."""
    from gradio_client.exceptions import AppError

    out = {}
    for name in names:
        try:
            client.predict(*arguments(name, case), api_name=name)
            out[name] = ""
        except AppError as err:
            out[name] = str(err)
    return out


@pytest.mark.parametrize("who,role,forbidden", [
    ("view", "viewer", (REVIEWER, ADMIN)),
    ("rev", "reviewer", (ADMIN,)),
])
def test_users_without_the_role_are_refused_and_nothing_changes(
    sec_server, login, named, ctx, tmp_path, who, role, forbidden
):
    case = make_case(ctx, tmp_path, str(sec_server.teacher_weights))
    names = [n for n in named if ROLES[n] in forbidden]
    assert len(names) >= (10 if role == "reviewer" else 20)
    before = state_snapshot(ctx, sec_server.data_dir)
    messages = _refusals(login(who), names, case)
    unclear = {n: m for n, m in messages.items()
               if f"has the {role} role" not in m or "ask an admin" not in m}
    assert not unclear, unclear
    assert state_snapshot(ctx, sec_server.data_dir) == before
    opened = login(who).predict(case.task_id, api_name="/review_open")  # looking is allowed
    assert opened[0] == case.task_id


def test_the_raw_run_routes_check_the_role_too(sec_server, http, ctx):
    """The same refusal without gradio_client: /run (which skips the queue) and /call/v2."""
    before = state_snapshot(ctx, sec_server.data_dir)
    viewer = http("view")
    r = viewer.post("/gradio_api/run/admin_add_user",
                    json={"data": ["mallory", "mallory's password", "admin"]})
    assert r.status_code == 500 and "has the viewer role" in r.json()["error"]
    r = viewer.post("/gradio_api/call/v2/admin_set_user",
                    json={"user_name": "view", "new_role": "admin", "is_active": True})
    assert r.status_code == 200
    events = viewer.get(f"/gradio_api/call/admin_set_user/{r.json()['event_id']}").text
    assert "event: error" in events and "has the viewer role" in events
    assert state_snapshot(ctx, sec_server.data_dir) == before


def _queue_call(client, dep: dict) -> str:
    """Run one handler by fn_index through the queue; returns the completed message's JSON."""
    session = uuid.uuid4().hex
    body = {"data": [None] * len(dep["inputs"]), "fn_index": dep["id"], "session_hash": session,
            "trigger_id": (dep.get("targets") or [[None]])[0][0], "event_data": None}
    r = client.post("/gradio_api/queue/join", json=body)
    assert r.status_code == 200, (dep["id"], r.status_code, r.text[:200])
    with client.stream("GET", "/gradio_api/queue/data", params={"session_hash": session}) as s:
        for line in s.iter_lines():
            if line.startswith("data:") and '"process_completed"' in line:
                return line
    raise AssertionError(f"fn_index {dep['id']} never completed")


@pytest.mark.parametrize("who", ["view", "rev"])
def test_handlers_without_an_api_name_give_no_way_around_the_roles(
    sec_server, http, dependencies, ctx, who
):
    hidden = [d for d in dependencies if d.get("api_visibility") != "public"]
    assert len(hidden) >= 15  # load events, selects, .success chains of the review platform
    before = state_snapshot(ctx, sec_server.data_dir)
    leaked = {}
    for dep in hidden:
        done = json.loads(_queue_call(http(who), dep).removeprefix("data:"))
        text = json.dumps(done.get("output"))
        found = [s for s in ADMIN_ONLY_TEXT if s in text]
        if found:
            leaked[(dep["id"], dep.get("api_name"))] = found
    assert not leaked, leaked
    assert state_snapshot(ctx, sec_server.data_dir) == before


def test_a_disabled_account_loses_its_rights_in_its_open_session(sec_server, login, ctx,
                                                                 tmp_path):
    from gradio_client.exceptions import AppError

    case = make_case(ctx, tmp_path, str(sec_server.teacher_weights))
    temp = login("temp")  # a reviewer, logged in before the admin disables the account
    login("boss").predict("temp", "reviewer", False, api_name="/admin_set_user")
    before = state_snapshot(ctx, sec_server.data_dir)
    # Its session is revoked at once (401 at the door); a handler would also refuse it.
    with pytest.raises((AppError, httpx.HTTPStatusError), match=r"disabled|401"):
        temp.predict(*arguments("/review_note", case), api_name="/review_note")
    with pytest.raises((AppError, httpx.HTTPStatusError), match=r"disabled|401"):
        temp.predict(case.task_id, api_name="/review_open")
    assert state_snapshot(ctx, sec_server.data_dir) == before
