"""The server of depthweb: one ASGI app (FastAPI + uvicorn) mounting both web apps.

Layout (one process)::

    /                    the public Studio (Predict, Compare, Stereo; gradio_client API)
    /review/             the review platform (Review, Admin, Train) behind its own login
    /login/huggingface,  Hugging Face sign-in (only on a Space with OAuth; at the root,
    /login/callback,     where gr.LoginButton's script sends the browser)
    /logout

- :func:`build_server` (in :mod:`depthweb.server.assembly`) returns the ASGI app: it
  :func:`~depthweb.server.assembly.assemble`\\ s the FastAPI app (mounts) and then
  :func:`~depthweb.server.assembly.wrap`\\ s it in the request-level middlewares. ``wrap`` is the
  one place where pure-ASGI middlewares (origin checks, body limits, sessions: the modules
  ``guards.py`` and ``sessions.py`` beside this one) are added around the whole server, so
  they see every request before Gradio does, on both mounts.
- :func:`serve` (in :mod:`depthweb.server.run`) runs it with uvicorn on
  ``GRADIO_SERVER_NAME`` / ``GRADIO_SERVER_PORT`` (``python app.py``);
  :func:`start_in_thread` runs it in a background thread (tests, benchmarks).

Importing this package builds and starts nothing.
"""

from __future__ import annotations

__all__ = ["REVIEW_PATH", "assemble", "build_server", "serve", "start_in_thread"]

_HOME = {"REVIEW_PATH": "assembly", "assemble": "assembly", "build_server": "assembly",
         "serve": "run", "start_in_thread": "run"}


def __getattr__(name: str):
    if name in _HOME:
        import importlib

        return getattr(importlib.import_module(f"depthweb.server.{_HOME[name]}"), name)
    raise AttributeError(f"module 'depthweb.server' has no attribute {name!r}")
