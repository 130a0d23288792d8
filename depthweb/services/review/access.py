"""Who may use the review platform: opening its database for the app, counting users, checking
passwords, the role of a name, and the local account of a Hugging Face login.

The web layer (:mod:`depthweb.ui.auth`) decides *when* the review feature is on and wires
Gradio's login to it; everything that touches the database or SQLAlchemy is here, so ``ui/``
imports neither (the layers in DESIGN.md).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from depthweb.errors import DepthwebError, InputError
from depthweb.services.review.context import ReviewContext
from depthweb.store import SYSTEM, Role, authenticate, create_user, get_user, update_user
from depthweb.store.auth import DEFAULT_THROTTLE, NAME_RE, LoginThrottle, Throttle
from depthweb.store.models import User

log = logging.getLogger(__name__)

OAUTH_SUFFIX = "@hf"
__all__ = ["DEFAULT_THROTTLE", "LoginThrottle", "Throttle"]


def _sqlite_database(url: str) -> str | None:
    """The database part of an SQLite URL ("" or ":memory:" in memory); None: another backend
    or not a URL at all (opening it reports that in one sentence)."""
    try:
        u = make_url(url)
    except (ArgumentError, ValueError):
        return None
    return (u.database or "") if u.get_backend_name() == "sqlite" else None


def sqlite_file(url: str) -> Path | None:
    """The file of an SQLite database URL (None: not SQLite, in memory, or not a URL)."""
    db = _sqlite_database(url)
    return Path(db).expanduser() if db not in (None, "", ":memory:") else None


def sqlite_file_missing(url: str) -> bool:
    """True for an SQLite URL whose file does not exist yet (or an in-memory one): looking at
    it would create it."""
    if _sqlite_database(url) is None:
        return False
    path = sqlite_file(url)
    return path is None or not path.is_file()


def count_active_users(ctx: ReviewContext) -> int:
    """How many active users the database holds (the review feature turns on with one).
    Raises :class:`DepthwebError` when the users table cannot be read."""
    from sqlalchemy import func, select

    try:
        with ctx.session(readonly=True) as s:
            return int(s.scalar(select(func.count(User.id)).where(User.active)) or 0)
    except SQLAlchemyError as exc:
        raise DepthwebError(f"Cannot read the users table ({type(exc).__name__}); run "
                            "`depthweb db upgrade`.") from exc


def load_user(session: Session, username: str | None) -> User | None:
    """The stored user called ``username`` (None for no name or an unknown one)."""
    if not username:
        return None
    return get_user(session, username)


def user_role(ctx: ReviewContext, username: str | None) -> str | None:
    """The role of an active user, or None (unknown, disabled, not logged in)."""
    with ctx.session(readonly=True) as s:
        user = load_user(s, username)
        return user.role if user is not None and user.active else None


def password_check(ctx: ReviewContext, throttle: Throttle = DEFAULT_THROTTLE
                   ) -> Callable[[str, str], bool]:
    """A blocking ``(name, password) -> bool``: True for an active user with this password
    (argon2; a throttled name is refused without checking; passwords are never logged). A
    database error is logged by its type and refuses the login."""

    def check(username: str, password: str) -> bool:
        try:
            with ctx.session() as s:  # a write session: an outdated hash is upgraded on login
                return authenticate(session=s, name=username, password=password,
                                    throttle=throttle) is not None
        except SQLAlchemyError as exc:
            log.error("login check failed: database error %s", type(exc).__name__)
            return False

    return check


def oauth_user_name(hf_username: str) -> str:
    """The local user name of a Hugging Face account (``<name>@hf``)."""
    name = f"{hf_username.strip()}{OAUTH_SUFFIX}"
    if not NAME_RE.match(name):
        raise InputError(f"The Hugging Face name {hf_username!r} cannot be used as a user name.")
    return name


def ensure_oauth_user(ctx: ReviewContext, hf_username: str, role: str | Role = Role.VIEWER,
                      admin: bool = False) -> str:
    """The local user of a Hugging Face login, created the first time with ``role`` (or admin
    when ``admin``: the name is in ``DEPTHWEB_ADMINS``); its password is a random secret
    nobody knows. A listed admin whose account exists with a lower role is promoted (the
    setting is the operator's word); nobody is ever demoted here."""
    name = oauth_user_name(hf_username)
    wanted = Role.ADMIN if admin else Role(role)
    try:
        with ctx.session() as s:
            user = get_user(s, name)
            if user is None:
                create_user(session=s, actor=SYSTEM, name=name,
                            password=secrets.token_urlsafe(32), role=wanted)
                log.info("created %s %s for a Hugging Face login", wanted.value, name)
            elif admin and user.role != Role.ADMIN and user.active:
                update_user(session=s, actor=SYSTEM, name=name, role=Role.ADMIN)
                log.info("promoted %s to admin (DEPTHWEB_ADMINS)", name)
    except IntegrityError:  # created by a concurrent request
        log.debug("user %s was created concurrently", name)
    return name
