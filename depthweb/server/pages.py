"""Login pages that describe nothing: Gradio 6.31 embeds the whole API description of an app
(every endpoint, its parameters and example calls) in the login page it shows anonymous
visitors (``window.gradio_api_info`` in ``frontend/index.html``), although its own
``/gradio_api/info`` route refuses them. :class:`BlankLoginApiInfo` replaces that description
with ``null`` in the review mount's login page; logged-in pages are untouched.
"""

from __future__ import annotations

import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from depthweb.config import Settings
from depthweb.ui.auth import REVIEW_PATH

_LOGIN_MARK = b'"auth_required":true'
_API_INFO = re.compile(rb"window\.gradio_api_info = .*?;</script>", re.DOTALL)
_BLANK = b"window.gradio_api_info = null;</script>"


class BlankLoginApiInfo:
    """Pure ASGI middleware: on ``GET``/``HEAD`` of the pages under ``prefix`` (``/review``,
    ``/review/``), a login page (Gradio's config says ``auth_required``) loses its embedded
    API description. Other requests pass through unbuffered."""

    def __init__(self, app: ASGIApp, prefix: str = REVIEW_PATH) -> None:
        self.app, self.pages = app, {prefix, prefix + "/"}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] != "http" or scope.get("method") not in ("GET", "HEAD")
                or scope.get("path") not in self.pages):
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        chunks: list[bytes] = []

        async def buffered(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
                return
            if message["type"] != "http.response.body" or start is None:
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return
            body = b"".join(chunks)
            if _LOGIN_MARK in body:
                body = _API_INFO.sub(_BLANK, body, count=1)
            headers = [(k, v) for k, v in start.get("headers", [])
                       if k.lower() != b"content-length"]
            headers.append((b"content-length", str(len(body)).encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, buffered)


def blank_login_api_info(app: ASGIApp, _settings: Settings) -> ASGIApp:
    """:data:`depthweb.server.assembly.MIDDLEWARES` entry for :class:`BlankLoginApiInfo`."""
    return BlankLoginApiInfo(app)
