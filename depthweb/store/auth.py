"""Users, argon2 password hashes, a failed-login throttle and server-side role checks.

Gradio's login has no rate limit, so :func:`authenticate` refuses to even check a password
while a user name is throttled (exponential backoff after a few failures). The throttle lives in
process memory: one web process (the Gradio app) sees every attempt.

Every mutating repository function takes the acting user and calls :func:`require_role` itself;
the CLI acts as :data:`SYSTEM` (an admin that can import and manage users but cannot author
review revisions).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from depthweb.errors import InputError
from depthweb.store.errors import NotFoundError, PermissionDeniedError
from depthweb.store.models import Role, User

logger = logging.getLogger(__name__)

NAME_RE = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
MIN_PASSWORD_LEN = 8


@dataclass(frozen=True)
class SystemActor:
    """The trusted local operator (CLI, jobs): admin rights, no user row."""

    name: str = "system"
    role: str = Role.ADMIN.value
    active: bool = True
    id: None = None


SYSTEM = SystemActor()
Actor = User | SystemActor


def require_role(user: Actor | None, *roles: str) -> None:
    """Raise :class:`PermissionDeniedError` unless ``user`` is active and has one of ``roles``."""
    if user is None:
        raise PermissionDeniedError("You are not logged in; log in and try again.")
    if not user.active:
        raise PermissionDeniedError(f"The account {user.name!r} is disabled; ask an admin.")
    if user.role not in roles:
        needed = " or ".join(str(r) for r in roles)
        raise PermissionDeniedError(
            f"User {user.name!r} has the {user.role} role but this action needs {needed}; "
            "ask an admin for access."
        )


def require_person(user: Actor | None, *roles: str) -> User:
    """Like :func:`require_role`, and the actor must be a stored user (revisions need an author)."""
    require_role(user, *roles)
    if not isinstance(user, User):
        raise PermissionDeniedError("This action must be done by a logged-in user.")
    return user


class LoginThrottle:
    """Per-name failure counter: after ``free_attempts`` failures each further failure locks the
    name for ``base_delay_s * 2**k`` seconds (capped at ``max_delay_s``). Thread-safe."""

    def __init__(
        self,
        *,
        free_attempts: int = 5,
        base_delay_s: float = 1.0,
        max_delay_s: float = 900.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.free_attempts = free_attempts
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s
        self._clock = clock
        self._lock = threading.Lock()
        self._state: dict[str, tuple[int, float]] = {}  # key -> (failures, locked_until)

    @staticmethod
    def _key(name: str) -> str:
        return name.strip().lower()

    def retry_after(self, name: str) -> float:
        """Seconds until ``name`` may try again (0 when not locked)."""
        with self._lock:
            _, until = self._state.get(self._key(name), (0, 0.0))
        return max(0.0, until - self._clock())

    def failure(self, name: str) -> None:
        key = self._key(name)
        with self._lock:
            failures, _ = self._state.get(key, (0, 0.0))
            failures += 1
            over = failures - self.free_attempts
            delay = 0.0 if over < 0 else min(self.max_delay_s, self.base_delay_s * 2.0**over)
            self._state[key] = (failures, self._clock() + delay)

    def success(self, name: str) -> None:
        with self._lock:
            self._state.pop(self._key(name), None)


DEFAULT_THROTTLE = LoginThrottle()


@lru_cache(maxsize=1)
def _default_hasher() -> PasswordHasher:
    return PasswordHasher()


@lru_cache(maxsize=4)
def _dummy_hash(hasher: PasswordHasher) -> str:
    return hasher.hash("not a real password")


def hash_password(password: str, hasher: PasswordHasher | None = None) -> str:
    if len(password) < MIN_PASSWORD_LEN:
        raise InputError(f"Passwords need at least {MIN_PASSWORD_LEN} characters.")
    return (hasher or _default_hasher()).hash(password)


def get_user(session: Session, name: str) -> User | None:
    return session.scalar(select(User).where(User.name == name))


def list_users(session: Session) -> Sequence[User]:
    return session.scalars(select(User).order_by(User.name)).all()


def create_user(
    *,
    session: Session,
    actor: Actor,
    name: str,
    password: str,
    role: str | Role,
    hasher: PasswordHasher | None = None,
) -> User:
    """Add a user (admins and the CLI only); the password is stored as a salted argon2 hash."""
    require_role(actor, Role.ADMIN)
    if not NAME_RE.match(name):
        raise InputError(f"User name {name!r} is invalid: use 1-64 letters, digits or _.@-")
    if role not in {r.value for r in Role}:
        raise InputError(f"Unknown role {role!r}; use one of admin, reviewer, viewer.")
    if get_user(session, name) is not None:
        raise InputError(f"A user named {name!r} already exists; pick another name.")
    user = User(name=name, password_hash=hash_password(password, hasher), role=str(role))
    session.add(user)
    session.flush()
    logger.info("user %s (%s) created by %s", name, role, actor.name)
    return user


def _verify(hasher: PasswordHasher, stored: str, password: str) -> bool:
    try:
        return hasher.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def authenticate(
    *,
    session: Session,
    name: str,
    password: str,
    throttle: LoginThrottle = DEFAULT_THROTTLE,
    hasher: PasswordHasher | None = None,
) -> User | None:
    """The active user with this name and password, or None (wrong, unknown, disabled or
    throttled; a throttled name is refused without checking the password)."""
    hasher = hasher or _default_hasher()
    wait = throttle.retry_after(name)
    if wait > 0:
        logger.warning("login for %r refused: throttled for %.0f s more", name, wait)
        return None
    user = get_user(session, name)
    stored = user.password_hash if user is not None and user.active else _dummy_hash(hasher)
    ok = _verify(hasher, stored, password)  # always hash once: same timing for unknown names
    if not ok or user is None or not user.active:
        throttle.failure(name)
        logger.info("failed login for %r", name)
        return None
    throttle.success(name)
    if hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hasher.hash(password)
    return user


def _count_active_admins(session: Session) -> int:
    return (
        session.scalar(
            select(func.count()).select_from(User).where(User.role == Role.ADMIN, User.active)
        )
        or 0
    )


def update_user(
    *,
    session: Session,
    actor: Actor,
    name: str,
    role: str | Role | None = None,
    active: bool | None = None,
    password: str | None = None,
    current_password: str | None = None,
    hasher: PasswordHasher | None = None,
) -> User:
    """Change a user's role, active flag or password. Admins may change anyone; a non-admin may
    only change their own password and must give the ``current_password``. The last active
    admin cannot be demoted or disabled."""
    user = get_user(session, name)
    if user is None:
        raise NotFoundError(f"There is no user named {name!r}.")
    own_password_only = (
        role is None and active is None and isinstance(actor, User) and actor.id == user.id
    )
    if own_password_only and actor.role != Role.ADMIN:
        require_role(actor, *[r.value for r in Role])
        if not _verify(hasher or _default_hasher(), user.password_hash, current_password or ""):
            raise PermissionDeniedError("The current password is wrong; nothing was changed.")
    else:
        require_role(actor, Role.ADMIN)
    if role is not None and role not in {r.value for r in Role}:
        raise InputError(f"Unknown role {role!r}; use one of admin, reviewer, viewer.")
    loses_admin = (
        user.role == Role.ADMIN
        and user.active
        and ((role is not None and role != Role.ADMIN) or active is False)
    )
    if loses_admin and _count_active_admins(session) <= 1:
        raise InputError(f"{name!r} is the last active admin; make another admin first.")
    if role is not None:
        user.role = str(role)
    if active is not None:
        user.active = active
    if password is not None:
        user.password_hash = hash_password(password, hasher)
    session.flush()
    return user
