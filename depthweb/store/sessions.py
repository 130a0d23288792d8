"""Server-side login sessions: one row per web login, checked on every request.

Gradio keeps its login tokens in process memory and never expires them; the server layer
(:mod:`depthweb.server.sessions`) records each new token here (only its SHA-256) and asks
:func:`check_session` on every request that carries one. A session is valid while its row is
not revoked, its user is active, the user's ``password_epoch`` is the one the session was made
under, it was used within the idle limit and it is younger than the absolute limit.
Disabling a user or changing a password revokes the user's sessions
(:func:`depthweb.store.auth.update_user`); logging out revokes one.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from depthweb.store.models import LoginSession, User, utcnow


def hash_token(token: str) -> str:
    """The SHA-256 hex digest stored instead of the token itself."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class SessionCheck:
    """The outcome of :func:`check_session`: ``user`` (its name) when valid, else ``reason``;
    ``stale`` when ``last_seen_at`` should be refreshed (:func:`touch_session`)."""

    user: str | None
    reason: str = ""
    stale: bool = False


def open_session(*, session: Session, user_name: str, token: str,
                 client: str | None = None) -> LoginSession | None:
    """Record a new login of ``user_name`` (None when there is no such active user)."""
    user = session.scalar(select(User).where(User.name == user_name))
    if user is None or not user.active:
        return None
    now = utcnow()
    row = LoginSession(token_sha256=hash_token(token), user_id=user.id,
                       epoch=user.password_epoch or 0, client=(client or None) and client[:64],
                       created_at=now, last_seen_at=now)
    session.add(row)
    session.flush()
    return row


def check_session(*, session: Session, token: str, idle_s: float, absolute_s: float,
                  touch_after_s: float = 60.0, now: datetime | None = None) -> SessionCheck:
    """Whether ``token`` is a valid login now (module docstring); read-only."""
    now = now or utcnow()
    found = session.execute(
        select(LoginSession, User).join(User, User.id == LoginSession.user_id)
        .where(LoginSession.token_sha256 == hash_token(token))
    ).first()
    if found is None:
        return SessionCheck(None, "unknown")
    row, user = found
    if row.revoked_at is not None:
        return SessionCheck(None, "revoked")
    if not user.active:
        return SessionCheck(None, "disabled")
    if row.epoch != (user.password_epoch or 0):
        return SessionCheck(None, "password changed")
    if now - row.created_at > timedelta(seconds=absolute_s):
        return SessionCheck(None, "expired")
    if now - row.last_seen_at > timedelta(seconds=idle_s):
        return SessionCheck(None, "idle")
    stale = now - row.last_seen_at > timedelta(seconds=touch_after_s)
    return SessionCheck(user.name, stale=stale)


def touch_session(*, session: Session, token: str, now: datetime | None = None) -> None:
    """Mark the session as used now (idle expiry counts from here)."""
    session.execute(update(LoginSession)
                    .where(LoginSession.token_sha256 == hash_token(token))
                    .values(last_seen_at=now or utcnow()))


def revoke_session(*, session: Session, token: str) -> int:
    """Revoke one session (logout); returns how many rows changed (0 or 1)."""
    result = session.execute(update(LoginSession)
                             .where(LoginSession.token_sha256 == hash_token(token),
                                    LoginSession.revoked_at.is_(None))
                             .values(revoked_at=utcnow()))
    return int(result.rowcount or 0)


def revoke_user_sessions(*, session: Session, user_id: int) -> int:
    """Revoke every open session of a user (disable, password change)."""
    result = session.execute(update(LoginSession)
                             .where(LoginSession.user_id == user_id,
                                    LoginSession.revoked_at.is_(None))
                             .values(revoked_at=utcnow()))
    return int(result.rowcount or 0)


def purge_sessions(*, session: Session, older_than_s: float) -> int:
    """Delete sessions created more than ``older_than_s`` ago (no longer valid anyway)."""
    cutoff = utcnow() - timedelta(seconds=older_than_s)
    result = session.execute(delete(LoginSession).where(LoginSession.created_at < cutoff))
    return int(result.rowcount or 0)
