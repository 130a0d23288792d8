"""The session guard records logins from both kinds of login form: URL-encoded
(``gradio_client``, curl) and multipart (Gradio's own login page in a browser)."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from argon2 import PasswordHasher

from depthweb.config import Settings
from depthweb.server.sessions import SessionGuard, form_username
from depthweb.store import SYSTEM, create_user, make_engine, session_scope, upgrade
from depthweb.store.sessions import check_session


def _run(coro):
    """Run ``coro`` to completion in a thread of its own: a session-wide Playwright (sync API)
    may already run an event loop in this thread, where ``asyncio.run`` refuses."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


async def _fake_gradio(scope, receive, send):
    """Answers a login like Gradio does: 200 and an access-token cookie."""
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": [
        (b"set-cookie", b"access-token-unsecure-abc=tok-123; HttpOnly; Path=/")]})
    await send({"type": "http.response.body", "body": b'{"success":true}'})


@pytest.mark.parametrize("multipart", [False, True])
def test_a_login_is_recorded_from_either_form_encoding(tmp_path, multipart):
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    upgrade(url)
    engine = make_engine(url)
    with session_scope(engine) as s:
        create_user(session=s, actor=SYSTEM, name="ann", password="a long password",
                    role="reviewer", hasher=PasswordHasher(time_cost=1, memory_cost=1024,
                                                           parallelism=1))
    guard = SessionGuard(_fake_gradio, engine, Settings(data_dir=tmp_path))
    fields = {"username": "ann", "password": "a long password"}

    async def go():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=guard),
                                     base_url="http://test") as client:
            if multipart:
                return await client.post("/login", files={k: (None, v) for k, v in
                                                           fields.items()})
            return await client.post("/login", data=fields)

    assert _run(go()).status_code == 200
    with session_scope(engine, readonly=True) as s:
        assert check_session(session=s, token="tok-123", idle_s=60, absolute_s=60).user == "ann"
    engine.dispose()


def test_a_form_without_a_name_gives_an_empty_name():
    scope = {"type": "http", "method": "POST", "path": "/login",
             "headers": [(b"content-type", b"application/x-www-form-urlencoded")]}
    assert _run(form_username(scope, b"password=x")) == ""
    assert _run(form_username(scope, b"username=%20bob%20&password=x")) == "bob"
