"""Every HTTP route of the assembled server, from the app itself, and how each must answer an
anonymous caller.

:func:`server_routes` walks the parent FastAPI app and every mount (the Studio at ``/``, the
review platform at ``/review``), so a route Gradio adds in a later version shows up here and
fails :func:`classify` until it is placed in one of the tables below:

- ``REVIEW_OPEN``: routes of the review mount that answer without login: the login page and
  form, static assets, theme, icons, and Gradio's "who am I" probes (they reveal nothing).
- Every other route of the review mount must refuse an anonymous caller (401 or 403), whatever
  the arguments; ``REVIEW_NOT_FOUND`` lists those that answer 404 to anyone because the
  feature is off in this app (dev reload, MCP, vibe editing, monitoring without a key).
- Studio routes are public (the Studio has no login).
- ``ROOT_ROUTES``: the parent app's own routes (Hugging Face sign-in, only with OAuth).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from starlette.routing import Mount

REVIEW_PREFIX = "/review"
DUMMY = {"path": "x.png", "path_or_url": "x.png", "url_path": "x", "size": "192",
         "key": "x", "id": "1", "environment": "client", "type": "js", "file_name": "x.js",
         "event_id": "x", "session_hash": "x", "run": "0", "component_id": "1",
         "segment_id": "0", "ext": "ts", "api_name": "review_note", "endpoint": "x",
         "record_id": "x", "asset_id": "x"}

REVIEW_OPEN = {
    "/", "/login", "/login/", "/logout", "/favicon.ico", "/theme.css", "/robots.txt",
    "/manifest.json", "/pwa_icon", "/pwa_icon/{size}", "/static/{path:path}",
    "/assets/{path:path}", "/svelte/{path:path}", "/gradio_api/theme.css",
    "/gradio_api/login_check", "/gradio_api/login_check/", "/gradio_api/user",
    "/gradio_api/user/", "/gradio_api/app_id", "/gradio_api/app_id/",
    "/gradio_api/custom_component/{id}/{environment}/{type}/{file_name}",
}
"""Review-mount routes that answer anonymously: the login page and form, Gradio's static
assets and icons, and probes that say only whether the caller is logged in."""

ROOT_ROUTES = {"/login/huggingface", "/login/callback", "/logout"}
"""The parent app's own routes (Hugging Face sign-in, only on a Space with OAuth)."""


@dataclass(frozen=True)
class ServerRoute:
    mount: str  # "/review", "" (Studio) or "root"
    path: str  # inside the mount
    methods: tuple[str, ...]

    @property
    def full_path(self) -> str:
        return (self.mount if self.mount != "root" else "") + self.path

    def url_path(self) -> str:
        """The path with every parameter filled with a harmless dummy value."""
        return re.sub(r"\{(\w+)(:\w+)?\}", lambda m: DUMMY[m[1]], self.full_path)


def _walk(routes, mount: str, out: list[ServerRoute]) -> None:
    for r in routes:
        if isinstance(r, Mount):
            _walk(getattr(r.app, "routes", []), r.path, out)
        elif hasattr(r, "original_router"):  # FastAPI's included routers
            _walk(r.original_router.routes, mount, out)
        else:
            methods = tuple(sorted(set(getattr(r, "methods", None) or ["GET"]) - {"HEAD"}))
            out.append(ServerRoute(mount, r.path, methods or ("GET",)))


def server_routes(app) -> list[ServerRoute]:
    """Every route of the parent app ``app`` and of its mounts."""
    out: list[ServerRoute] = []
    for r in app.routes:
        if isinstance(r, Mount):
            _walk(getattr(r.app, "routes", []), r.path, out)
        else:
            _walk([r], "root", out)
    return out


def classify(route: ServerRoute) -> str:
    """``open`` (answers anyone), ``login`` (refuses anonymous callers), ``public`` (Studio)
    or ``root``; raises for a parent-app route nobody classified."""
    if route.mount == REVIEW_PREFIX:
        return "open" if route.path in REVIEW_OPEN else "login"
    if route.mount == "":
        return "public"
    if route.path in ROOT_ROUTES or route.path in ("/openapi.json",):
        return "root"
    raise AssertionError(f"unclassified route of the server: {route}")
