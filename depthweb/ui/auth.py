"""Login for the review platform: when the Review tabs are on, who may use the app, and which
user a request acts as.

**When the review feature is on** (``DEPTHWEB_REVIEW``, see :func:`review_mode`):
``off``: Studio only, no login. ``on``: the Review and Admin tabs are built and the database
must be migrated (else the app refuses to start with a sentence). ``auto`` (default): on when
the database already exists (an SQLite file is never created just to look) and holds at least
one active user; otherwise the public Studio runs exactly as before, without login.

**How people log in.** Normally Gradio's login page protects the review platform (``auth=`` from
:func:`review_launch_kwargs`): :func:`make_auth` checks name and password with
:func:`depthweb.services.review.access.password_check` (argon2 hashes, a login throttle
against guessing; passwords are never logged). On a Hugging Face Space with OAuth enabled
(``hf_oauth: true``: ``SYSTEM=spaces`` and ``OAUTH_CLIENT_ID`` set) the Studio stays public,
a "Sign in with Hugging Face" button is shown instead, and a signed-in account acts as the
local user ``<hf name>@hf``: an admin when the name is listed in ``DEPTHWEB_ADMINS``, else
created with ``DEPTHWEB_OAUTH_DEFAULT_ROLE`` (viewer by default; an admin promotes it). Off
Spaces nothing of OAuth is built, so Gradio's mocked OAuth routes never exist.

**Where.** :mod:`depthweb.server` mounts the review platform at :data:`REVIEW_PATH` with the
``auth=`` of :func:`review_launch_kwargs` (its own login page and cookie); the public Studio at
``/`` has no login. With OAuth the sign-in routes stay at the server's root.

Handlers never trust the page: :meth:`ReviewApp.username` reads the user server-side from
``gr.Request.username`` (or the OAuth profile) and the services check the role in the database.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from threading import Lock

import gradio as gr
from gradio.context import get_blocks_context

from depthweb.config import Settings
from depthweb.errors import DepthwebError
from depthweb.services.review import access
from depthweb.services.review.access import DEFAULT_THROTTLE, Throttle
from depthweb.services.review.context import ReviewContext

log = logging.getLogger(__name__)

MODES = ("auto", "on", "off")
REVIEW_PATH = "/review"
"""Where :mod:`depthweb.server` mounts the review platform (the Studio is at ``/``)."""
AUTH_MESSAGE = ("<p>depthweb label review: log in with the account an admin gave you "
                "(<code>depthweb users add NAME --role reviewer</code>).</p>")


def _has_authlib() -> bool:
    return importlib.util.find_spec("authlib") is not None


def oauth_available() -> bool:
    """True on a Hugging Face Space whose OAuth app is configured (``hf_oauth: true``) and
    whose image has ``gradio[oauth]`` (authlib); without authlib, password login is used."""
    on_space = os.environ.get("SYSTEM") == "spaces" and bool(os.environ.get("SPACE_ID"))
    if not (on_space and os.environ.get("OAUTH_CLIENT_ID")):
        return False
    if not _has_authlib():
        log.error("Hugging Face OAuth is configured but authlib is missing: add gradio[oauth] "
                  "to requirements.txt; falling back to password login")
        return False
    return True


@dataclass
class ReviewApp:
    """What the review tabs need: the review context, whether Hugging Face OAuth is used, and
    the settings. One per process (:func:`review_setup`)."""

    ctx: ReviewContext
    oauth: bool = False

    @property
    def settings(self) -> Settings:
        return self.ctx.settings

    def username(self, request: gr.Request | None, profile: gr.OAuthProfile | None = None
                 ) -> str | None:
        """The acting user's name, read server-side (None = not logged in)."""
        name = getattr(request, "username", None) if request is not None else None
        if name:
            return str(name)
        if self.oauth and profile is not None:
            hf_name = getattr(profile, "username", None) or profile.get("preferred_username")
            if hf_name:
                return access.ensure_oauth_user(self.ctx, str(hf_name),
                                                role=self.settings.oauth_default_role,
                                                admin=str(hf_name) in self.settings.admin_names)
        return None


def review_mode(settings: Settings) -> str:
    mode = (settings.review or "auto").strip().lower()
    aliases = {"1": "on", "true": "on", "yes": "on", "0": "off", "false": "off", "no": "off"}
    mode = aliases.get(mode, mode)
    if mode not in MODES:
        raise DepthwebError(f"DEPTHWEB_REVIEW={settings.review!r} is not one of auto, on, off.")
    return mode


_cache: dict[tuple[str, str], ReviewApp | None] = {}
_cache_lock = Lock()


def _context(settings: Settings, mode: str) -> ReviewContext | None:
    """The review context, or None (mode ``auto``) when the database cannot be used."""
    try:
        if mode == "auto" and access.sqlite_file_missing(settings.resolved_database_url):
            if not oauth_available():
                return None
            # a Space signs people in with Hugging Face and has no command line: create it
            return ReviewContext.from_settings(settings, create=True)
        return ReviewContext.from_settings(settings)
    except DepthwebError as exc:  # unusable URL, missing driver, unreachable or not migrated
        if mode == "on":
            raise
        log.warning("review tabs off: %s", exc)
    return None


def _open(settings: Settings, mode: str) -> ReviewApp | None:
    ctx = _context(settings, mode)
    if ctx is None:
        return None
    try:
        n_users = access.count_active_users(ctx)
    except DepthwebError:
        ctx.close()
        if mode == "on":
            raise
        return None
    oauth = oauth_available()
    if n_users == 0 and mode == "auto" and not oauth:
        ctx.close()
        return None
    if n_users == 0 and not oauth:  # on a Space, DEPTHWEB_ADMINS names the first admins
        log.warning("the review tabs are on but no user exists: add one with "
                    "`depthweb users add NAME --role admin`")
    return ReviewApp(ctx, oauth=oauth)


def review_setup(settings: Settings) -> ReviewApp | None:
    """The process's :class:`ReviewApp`, or None when the review feature is off (module
    docstring). Cached per (database URL, data dir): ``build_review`` and the mount share
    one engine."""
    mode = review_mode(settings)
    if mode == "off":
        return None
    key = (settings.resolved_database_url, str(settings.data_dir))
    with _cache_lock:
        if key not in _cache or (_cache[key] is None and mode == "on"):
            _cache[key] = _open(settings, mode)
        return _cache[key]


def clear_review_cache() -> None:
    """Forget (and close) the cached review contexts (tests)."""
    with _cache_lock:
        for app in _cache.values():
            if app is not None:
                app.ctx.close()
        _cache.clear()


def make_auth(
    ctx: ReviewContext, throttle: Throttle = DEFAULT_THROTTLE
) -> Callable[[str, str], Awaitable[bool]]:
    """Gradio's ``auth=`` callable: True for an active user with this password. The argon2
    check runs in a worker thread (Gradio awaits coroutine functions), so a login never stalls
    the server; a throttled name is refused without checking."""
    check = access.password_check(ctx, throttle)

    async def auth(username: str, password: str) -> bool:
        return await asyncio.to_thread(check, username or "", password or "")

    return auth


def review_launch_kwargs(settings: Settings) -> dict:
    """``launch()`` arguments for the review feature: ``auth`` + ``auth_message`` with
    password login, nothing when the feature is off or Hugging Face OAuth is used."""
    app = review_setup(settings)
    if app is None or app.oauth:
        return {}
    return {"auth": make_auth(app.ctx), "auth_message": AUTH_MESSAGE}


def login_button(app: ReviewApp) -> None:
    """The "Sign in with Hugging Face" button, only when OAuth is used (inert elsewhere). Its
    script sends the browser to ``/login/huggingface`` (at the root, where the server keeps
    the sign-in routes) and back to the review platform, not to the Studio."""
    if not app.oauth:
        return
    button = gr.LoginButton(elem_id="review-hf-login")
    blocks = get_blocks_context()
    for fn in blocks.fns.values() if blocks is not None else ():
        if fn.js and "/login/huggingface" in fn.js and any(
                t[0] == button._id for t in fn.targets):
            fn.js = fn.js.replace("_target_url=/", f"_target_url={REVIEW_PATH}/")
