"""Server-side login sessions for the review platform, checked on every request.

Gradio's password login keeps its tokens in process memory for ever: a disabled user, or one
whose password was changed, keeps a working cookie. :class:`SessionGuard` wraps the mounted
review app:

- a successful ``POST .../login`` (Gradio sets an ``access-token-*`` cookie) is recorded as a
  :class:`~depthweb.store.models.LoginSession` (only the token's SHA-256); if it cannot be
  recorded the login is refused (503), so no unrecorded cookie is ever handed out;
- every other request (pages, API, queue, file routes) that carries an ``access-token-*``
  cookie is checked with :func:`depthweb.store.sessions.check_session` (revoked, user disabled,
  password changed, idle or absolute expiry); an invalid one is removed from the request before
  Gradio sees it, so Gradio treats the request as logged out (login page, 401 on the API);
- ``.../logout`` revokes the session of the cookie it carries.

A database error while checking counts as "not logged in" (fail closed). :func:`unavailable_app`
is the stand-in for the review platform when its database cannot be opened at start.
"""

from __future__ import annotations

import asyncio
import logging
from http.cookies import CookieError, SimpleCookie

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request

from depthweb.config import Settings
from depthweb.server.guards import ASGIApp, Message, Receive, Scope, Send, header, is_logout
from depthweb.store.engine import session_scope
from depthweb.store.sessions import (
    SessionCheck,
    check_session,
    open_session,
    revoke_session,
    touch_session,
)

log = logging.getLogger(__name__)

TOKEN_PREFIX = "access-token-"
MAX_LOGIN_BODY = 16 * 1024


def _cookies(scope: Scope) -> dict[str, str]:
    jar: dict[str, str] = {}
    for k, v in scope.get("headers") or ():
        if k.lower() != b"cookie":
            continue
        try:
            parsed = SimpleCookie(v.decode("latin-1"))
        except CookieError:
            continue
        jar.update({name: morsel.value for name, morsel in parsed.items()})
    return jar


def login_tokens(scope: Scope) -> dict[str, str]:
    """The request's Gradio login cookies (``access-token-*``, secure or not): name -> token."""
    return {k: v for k, v in _cookies(scope).items() if k.startswith(TOKEN_PREFIX) and v}


def without_cookies(scope: Scope, names: set[str]) -> Scope:
    """A copy of ``scope`` whose ``Cookie`` headers lack ``names``."""
    headers = []
    for k, v in scope.get("headers") or ():
        if k.lower() == b"cookie":
            kept = [part for part in v.decode("latin-1").split(";")
                    if part.split("=", 1)[0].strip() not in names]
            if not kept:
                continue
            v = ";".join(kept).strip().encode("latin-1")
        headers.append((k, v))
    return dict(scope, headers=headers)


def _new_token(message: Message) -> str | None:
    """The token of an ``access-token-*`` cookie set by a response start message."""
    for k, v in message.get("headers") or ():
        if k.lower() != b"set-cookie":
            continue
        first = v.decode("latin-1").split(";", 1)[0]
        name, _, value = first.partition("=")
        if name.strip().startswith(TOKEN_PREFIX) and value.strip().strip('"'):
            return value.strip().strip('"')
    return None


async def form_username(scope: Scope, body: bytes) -> str:
    """The ``username`` field of a login form, URL-encoded (``gradio_client``) or multipart
    (Gradio's login page); "" when there is none."""
    async def replay() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(dict(scope, type="http"), replay).form()
        value = form.get("username")
    except (HTTPException, MultiPartException, ValueError, KeyError):
        return ""
    return value.strip() if isinstance(value, str) else ""


class SessionGuard:
    """Records, checks and revokes login sessions of the app it wraps (module docstring);
    only paths under ``prefix`` (the review platform's mount; ``""``: all) are guarded."""

    def __init__(self, app: ASGIApp, engine: Engine, settings: Settings,
                 prefix: str = "") -> None:
        self.app = app
        self.engine = engine
        self.prefix = prefix.rstrip("/")
        self.idle_s = float(settings.session_idle_min) * 60.0
        self.absolute_s = float(settings.session_max_hours) * 3600.0

    def _guarded(self, path: str) -> bool:
        return not self.prefix or path == self.prefix or path.startswith(self.prefix + "/")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] not in ("http", "websocket") or not self._guarded(path):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "http" and scope.get("method") == "POST" and \
                path.rstrip("/").endswith("/login"):
            await self._login(scope, receive, send)
            return
        tokens = login_tokens(scope)
        if tokens and is_logout(path):
            await asyncio.to_thread(self._revoke, list(tokens.values()))
        elif tokens:
            bad = {name for name, token in tokens.items()
                   if (await asyncio.to_thread(self._check, token)).user is None}
            if bad:
                scope = without_cookies(scope, bad)
        await self.app(scope, receive, send)

    def _check(self, token: str) -> SessionCheck:
        try:
            with session_scope(self.engine, readonly=True) as s:
                result = check_session(session=s, token=token, idle_s=self.idle_s,
                                       absolute_s=self.absolute_s)
            if result.user is not None and result.stale:
                with session_scope(self.engine) as s:
                    touch_session(session=s, token=token)
        except SQLAlchemyError as exc:
            log.error("session check failed (%s): treated as logged out", type(exc).__name__)
            return SessionCheck(None, "database error")
        if result.user is None and result.reason != "unknown":
            log.info("login session refused: %s", result.reason)
        return result

    def _revoke(self, tokens: list[str]) -> None:
        try:
            with session_scope(self.engine) as s:
                for token in tokens:
                    revoke_session(session=s, token=token)
        except SQLAlchemyError as exc:
            log.error("logout could not revoke the session (%s)", type(exc).__name__)

    def _record(self, user: str, token: str, client: str | None) -> bool:
        try:
            with session_scope(self.engine) as s:
                return open_session(session=s, user_name=user, token=token,
                                    client=client) is not None
        except SQLAlchemyError as exc:
            log.error("login session not recorded (%s): login refused", type(exc).__name__)
            return False

    async def _login(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the login form on, and record the session Gradio's answer creates."""
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # client went away
            body += message.get("body", b"")
            more = message.get("more_body", False) and len(body) <= MAX_LOGIN_BODY
        user = await form_username(scope, body)
        client = (scope.get("client") or ("", 0))[0]
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def recording_send(message: Message) -> None:
            if message["type"] == "http.response.start" and message.get("status") == 200:
                token = _new_token(message)
                if token and not await asyncio.to_thread(self._record, user, token, client):
                    message = {"type": "http.response.start", "status": 503, "headers": [
                        (b"content-type", b"application/json")]}
                    await send(message)
                    await send({"type": "http.response.body",
                                "body": b'{"detail": "Login is unavailable right now."}'})
                    state["dropped"] = True
                    return
            if not state["dropped"]:
                await send(message)

        state = {"dropped": False}
        await self.app(scope, replay, recording_send)


def review_sessions(app: ASGIApp, settings: Settings) -> ASGIApp:
    """The server middleware (:data:`depthweb.server.assembly.MIDDLEWARES`): a
    :class:`SessionGuard` on the review mount when the review platform is on."""
    from depthweb.errors import DepthwebError
    from depthweb.ui.auth import REVIEW_PATH, review_setup

    try:
        review = review_setup(settings)
    except DepthwebError:  # the assembly mounted the "unavailable" app there instead
        return app
    if review is None:
        return app
    return SessionGuard(app, review.ctx.engine, settings, prefix=REVIEW_PATH)


def review_unavailable_reason(settings: Settings) -> str | None:
    """Why the review platform should be up but cannot open its database, or None.

    It should be up when ``DEPTHWEB_REVIEW=on``, or (``auto``) when a database URL is set or
    the SQLite file exists: users may exist, so the review path must fail closed rather than
    disappear. ``off``, or ``auto`` with nothing configured, means no review platform."""
    from depthweb.errors import DepthwebError
    from depthweb.services.review.access import sqlite_file_missing
    from depthweb.services.review.context import ReviewContext
    from depthweb.ui.auth import review_mode

    try:
        mode = review_mode(settings)
    except DepthwebError as exc:
        return str(exc)
    if mode == "off":
        return None
    if mode == "auto" and not settings.database_url and sqlite_file_missing(
            settings.resolved_database_url):
        return None
    try:
        ReviewContext.from_settings(settings).close()
    except (DepthwebError, SQLAlchemyError, OSError) as exc:
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return None


UNAVAILABLE_HTML = """<!doctype html><html><head><meta charset="utf-8">
<title>Review unavailable</title></head><body style="font-family:sans-serif;margin:3em">
<h1>The review platform is unavailable</h1>
<p>Its database could not be opened when the server started, so nothing of it is served.
The public Studio keeps working. An operator should check the server log and
<code>DEPTHWEB_DATABASE_URL</code>, then restart the server.</p></body></html>"""


def unavailable_app(reason: str = "") -> ASGIApp:
    """An ASGI app answering every request with 503: an HTML page for browsers, a JSON
    sentence for API clients (fail closed when the review database cannot be opened)."""
    if reason:
        log.error("review platform unavailable: %s", reason)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            message = await receive()
            await send({"type": f"{message['type']}.complete"})
            return
        if scope["type"] != "http":
            return
        accept = (header(scope, "accept") or "").lower()
        if "text/html" in accept:
            body, ctype = UNAVAILABLE_HTML.encode(), b"text/html; charset=utf-8"
        else:
            body = (b'{"detail": "The review platform is unavailable: its database could not '
                    b'be opened."}')
            ctype = b"application/json"
        await send({"type": "http.response.start", "status": 503, "headers": [
            (b"content-type", ctype), (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store")]})
        await send({"type": "http.response.body", "body": body})

    return app
