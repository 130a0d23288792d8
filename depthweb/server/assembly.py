"""Assembly of the server: the FastAPI app with both Gradio apps mounted, then wrapped.

:func:`assemble` builds the Blocks (:mod:`depthweb.ui.app`) and mounts them with
``gr.mount_gradio_app``: the review platform at :data:`REVIEW_PATH` first (with its own
``auth=``: Gradio's login page and cookie, scoped to that mount's routes), then the Studio at
``/`` (no login: anonymous visitors and ``gradio_client`` use it). With Hugging Face OAuth (a
Space with ``hf_oauth: true``) the sign-in routes and the session middleware are added to the
parent app, so ``/login/huggingface`` and ``/logout`` stay at the root and the session cookie
reaches both mounts.

:func:`wrap` is where request-level middlewares go: each is a pure ASGI callable
``middleware(app, settings) -> app`` listed in :data:`MIDDLEWARES` (outermost last), seeing
every request of both mounts before Gradio does. :func:`build_server` = ``wrap(assemble())``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

import gradio as gr
from fastapi import FastAPI
from starlette.types import ASGIApp

from depthweb.config import Settings, get_settings
from depthweb.server.pages import blank_login_api_info
from depthweb.ui.app import build_review, build_studio, review_mount_kwargs, studio_mount_kwargs
from depthweb.ui.auth import REVIEW_PATH

log = logging.getLogger(__name__)

__all__ = ["MIDDLEWARES", "REVIEW_PATH", "Assembly", "assemble", "build_server", "wrap"]

Middleware = Callable[[ASGIApp, Settings], ASGIApp]
MIDDLEWARES: list[Middleware] = [blank_login_api_info]
"""Request-level middlewares around the whole server, innermost first: the review login page
without Gradio's API description (:mod:`depthweb.server.pages`); origin checks, body limits and
server-side sessions go here too (``guards.py``, ``sessions.py``)."""


@dataclass
class Assembly:
    """The parent FastAPI app and what is mounted on it (``review`` None: review off)."""

    app: FastAPI
    studio: gr.Blocks
    review: gr.Blocks | None
    oauth: bool


def server_address() -> tuple[str, int]:
    """(host, port) from ``GRADIO_SERVER_NAME`` / ``GRADIO_SERVER_PORT``, as in ``launch()``."""
    return (os.environ.get("GRADIO_SERVER_NAME") or "127.0.0.1",
            int(os.environ.get("GRADIO_SERVER_PORT") or 7860))


def assemble(settings: Settings | None = None) -> Assembly:
    """The parent FastAPI app with the review platform at ``/review`` (when on) and the
    Studio at ``/``. Raises :class:`~depthweb.errors.DepthwebError` when the settings cannot
    work (e.g. ``DEPTHWEB_REVIEW=on`` and no usable database)."""
    settings = settings or get_settings()
    host, port = server_address()
    app = FastAPI(title="depthweb", docs_url=None, redoc_url=None, openapi_url=None)
    studio = build_studio(settings)
    review = build_review(settings)
    oauth = review is not None and review.expects_oauth
    if oauth:
        from gradio.oauth import attach_oauth

        attach_oauth(app)  # /login/huggingface, /login/callback, /logout + session cookie
    if review is not None:
        gr.mount_gradio_app(app, review, REVIEW_PATH, server_name=host, server_port=port,
                            **review_mount_kwargs(settings))
    gr.mount_gradio_app(app, studio, "/", server_name=host, server_port=port,
                        **studio_mount_kwargs(settings))
    log.info("Studio at /, review platform %s", f"at {REVIEW_PATH}/" if review else "off")
    return Assembly(app, studio, review, oauth)


def wrap(app: ASGIApp, settings: Settings | None = None) -> ASGIApp:
    """``app`` inside every middleware of :data:`MIDDLEWARES` (the first is innermost)."""
    settings = settings or get_settings()
    for middleware in MIDDLEWARES:
        app = middleware(app, settings)
    return app


def build_server(settings: Settings | None = None) -> ASGIApp:
    """The ASGI app of the whole server: :func:`assemble` wrapped by :func:`wrap`."""
    settings = settings or get_settings()
    return wrap(assemble(settings).app, settings)
