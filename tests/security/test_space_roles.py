"""The server started in simulated Space mode (``SYSTEM=spaces``, ``SPACE_ID``, the OAuth
variables of ``hf_oauth: true``; the ``spaces`` package installed): the Studio at ``/`` is
public, the review platform at ``/review/`` shows "Sign in with Hugging Face", the sign-in
routes are at the root, an anonymous visitor calling every review, admin and train endpoint is
refused ("not logged in") and nothing changes, and a user named in ``DEPTHWEB_ADMINS`` gets the
Admin tab after signing in while others get the default role.

The Hub cannot be reached here, so the sign-in is simulated the way Gradio stores its result:
an ``oauth_info`` entry in the session cookie, signed with the key Gradio derives from
``OAUTH_CLIENT_SECRET`` (what ``/login/callback`` writes after a real sign-in).
"""

from __future__ import annotations

import base64
import hashlib
import json
import time

import httpx
import pytest

from tests.security.conftest import state_snapshot
from tests.security.endpoints import PUBLIC, ROLES, STUDIO, arguments, make_case
from tests.security.routes import ROOT_ROUTES, server_routes

SECRET = "a secret the tests set"
ADMIN, OTHER = "alice-admin", "bob-visitor"
SPACE_ENV = {"SYSTEM": "spaces", "SPACE_ID": "someone/depthweb", "OAUTH_CLIENT_ID": "client-id",
             "OAUTH_CLIENT_SECRET": SECRET, "OAUTH_SCOPES": "openid profile",
             "OPENID_PROVIDER_URL": "https://huggingface.co"}


def session_cookie(hf_name: str) -> str:
    """The ``session`` cookie Gradio's ``/login/callback`` sets after ``hf_name`` signed in."""
    from itsdangerous import TimestampSigner

    info = {"oauth_info": {
        "access_token": "hf_fake", "scope": "openid profile", "token_type": "bearer",
        "expires_at": int(time.time()) + 3600,
        "userinfo": {"preferred_username": hf_name, "name": hf_name.title(),
                     "profile": f"https://huggingface.co/{hf_name}", "picture": ""}}}
    key = hashlib.sha256(f"{SECRET}-v4".encode()).hexdigest()
    data = base64.b64encode(json.dumps(info).encode())
    return TimestampSigner(key).sign(data).decode()


@pytest.fixture(scope="module")
def space(sec_server, tmp_path_factory):
    """The whole server over the session's database, started in-process as on a Space."""
    import gradio.oauth

    from depthweb.server import start_in_thread
    from depthweb.ui import auth
    from tests.app.studio_server import free_port

    mp = pytest.MonkeyPatch()
    tmp = tmp_path_factory.mktemp("space")
    for k, v in {**SPACE_ENV, "GRADIO_TEMP_DIR": str(tmp / "gradio")}.items():
        mp.setenv(k, v)
    for k in ("OAUTH_CLIENT_ID", "OAUTH_CLIENT_SECRET", "OAUTH_SCOPES", "OPENID_PROVIDER_URL"):
        mp.setattr(gradio.oauth, k, SPACE_ENV[k])  # read by Gradio at import time
    settings = sec_server.settings().model_copy(update={
        "output_dir": tmp / "out", "admins": ADMIN, "review": "auto"})
    auth.clear_review_cache()
    running = start_in_thread(settings, port=free_port(), timeout_s=300)
    try:
        yield running
    finally:
        running.close()
        auth.clear_review_cache()
        mp.undo()


def test_the_space_keeps_the_sign_in_routes_at_the_root(space):
    assert space.assembly.oauth and space.review_url
    root = {r.path for r in server_routes(space.assembly.app) if r.mount == "root"}
    assert root >= ROOT_ROUTES
    r = httpx.get(space.url + "logout", params={"_target_url": "/review/"}, timeout=30)
    assert r.status_code in (302, 307) and r.headers["location"] == "/review/"
    config = httpx.get(space.review_url + "config", timeout=30).json()
    scripts = [d.get("js") or "" for d in config["dependencies"]]
    sign_in = [js for js in scripts if "/login/huggingface" in js]
    assert sign_in and all("_target_url=/review/" in js for js in sign_in)


@pytest.mark.slow
def test_anonymous_visitors_of_a_space_change_nothing(space, sec_server, ctx, tmp_path):
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    studio = Client(space.url, verbose=False, analytics_enabled=False,
                    download_files=str(tmp_path / "dl"))
    assert set(studio.view_api(return_format="dict", print_info=False)
               ["named_endpoints"]) == STUDIO
    visitor = Client(space.review_url, verbose=False, analytics_enabled=False,
                     download_files=str(tmp_path / "dl"))
    named = visitor.view_api(return_format="dict", print_info=False)["named_endpoints"]
    assert set(named) == set(ROLES)
    case = make_case(ctx, tmp_path, str(sec_server.teacher_weights))
    before = state_snapshot(ctx, sec_server.data_dir)
    unclear = {}
    for name in (n for n in named if ROLES[n] != PUBLIC or n == "/review_open"):
        try:
            visitor.predict(*arguments(name, case), api_name=name)
            unclear[name] = "ran"
        except AppError as err:
            if "not logged in" not in str(err):
                unclear[name] = str(err)
    assert not unclear, unclear
    assert state_snapshot(ctx, sec_server.data_dir) == before


def _review_page(browser, space, hf_name: str | None, shot=None):
    context = browser.new_context(viewport={"width": 1300, "height": 900})
    if hf_name:
        context.add_cookies([{"name": "session", "value": session_cookie(hf_name),
                              "url": space.url}])
    page = context.new_page()
    page.set_default_timeout(120_000)
    page.goto(space.review_url)
    page.wait_for_selector("#review-hf-login")
    if hf_name:
        page.wait_for_function("n => document.querySelector('#review-whoami')"
                               "?.innerText.includes(n)", arg=f"{hf_name}@hf")
    else:
        page.wait_for_timeout(1500)
    if shot:
        page.screenshot(path=str(shot))
    return context, page


def _tab_names(page) -> list[str]:
    return [t.strip() for t in page.get_by_role("tab").all_inner_texts()]


def test_a_listed_admin_gets_the_admin_tab_after_signing_in(space, browser, ctx,
                                                            tmp_path_factory):
    from depthweb.store import get_user

    shots = tmp_path_factory.mktemp("space-shots")
    context, page = _review_page(browser, space, None, shots / "anonymous.png")
    button = page.locator("#review-hf-login")
    assert "Sign in with Hugging Face" in button.inner_text()
    assert "lost when it restarts" in page.locator("#review-ephemeral").inner_text()  # no /data
    assert "Admin" not in _tab_names(page)
    context.close()

    context, page = _review_page(browser, space, ADMIN, shots / "admin.png")
    assert f"Logout ({ADMIN})" in page.locator("#review-hf-login").inner_text()
    page.wait_for_function("() => [...document.querySelectorAll('[role=tab]')]"
                           ".some(t => t.innerText.trim() === 'Admin')")
    assert {"Review", "Admin", "Train"} <= set(_tab_names(page))
    context.close()

    context, page = _review_page(browser, space, OTHER, shots / "other.png")
    page.wait_for_timeout(2000)  # the tabs' visibility arrives with the load events
    assert "Admin" not in _tab_names(page) and "Train" not in _tab_names(page)
    context.close()
    with ctx.session(readonly=True) as s:
        assert get_user(s, f"{ADMIN}@hf").role == "admin"
        assert get_user(s, f"{OTHER}@hf").role == "viewer"  # DEPTHWEB_OAUTH_DEFAULT_ROLE

