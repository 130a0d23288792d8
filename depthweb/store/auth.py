"""Users, argon2 password hashes, a failed-login throttle and server-side role checks.

Gradio's login has no rate limit, so :func:`authenticate` refuses to even check a password
while a login is throttled. The default :class:`LoginGuard` locks a (name, client address) pair
and a client address after repeated failures (exponential backoff), but only *slows down* a name
that fails from many addresses: an outsider cannot lock a user out of their own address. The
client address is :data:`CLIENT_ADDRESS`, set per request by the server layer
(:mod:`depthweb.server.guards`, which trusts forwarding headers only from named proxies). The
throttle lives in process memory: one web process sees every attempt.

Changing a password bumps the user's ``password_epoch`` and, like disabling a user, revokes
every stored login session of that user (:mod:`depthweb.store.sessions`).

Every mutating repository function takes the acting user and calls :func:`require_role` itself;
the CLI acts as :data:`SYSTEM` (an admin that can import and manage users but cannot author
review revisions).
"""

from __future__ import annotations

import contextvars
import logging
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session

from depthweb.errors import InputError
from depthweb.store.errors import NotFoundError, PermissionDeniedError
from depthweb.store.models import Role, User
from depthweb.store.sessions import revoke_user_sessions

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


CLIENT_ADDRESS: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "depthweb_client_address", default=None)
"""The client address of the request being served (set by the server layer; None elsewhere)."""


class LoginThrottle:
    """Per-key failure counter: after ``free_attempts`` failures each further failure locks the
    key (a user name by default) for ``base_delay_s * 2**k`` seconds (capped at
    ``max_delay_s``). Thread-safe. As a login throttle it ignores the client address."""

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

    def retry_after(self, name: str, address: str | None = None) -> float:
        """Seconds until ``name`` may try again (0 when not locked)."""
        with self._lock:
            _, until = self._state.get(self._key(name), (0, 0.0))
        return max(0.0, until - self._clock())

    def slow_down(self, name: str) -> float:
        """Seconds to wait before checking a password for ``name`` (none here)."""
        return 0.0

    def refused(self, name: str, address: str | None = None) -> None:
        """An attempt refused while locked (not counted here)."""

    def failure(self, name: str, address: str | None = None) -> None:
        key = self._key(name)
        with self._lock:
            failures, _ = self._state.get(key, (0, 0.0))
            failures += 1
            over = failures - self.free_attempts
            delay = 0.0 if over < 0 else min(self.max_delay_s, self.base_delay_s * 2.0**over)
            self._state[key] = (failures, self._clock() + delay)

    def success(self, name: str, address: str | None = None) -> None:
        with self._lock:
            self._state.pop(self._key(name), None)


class LoginGuard:
    """The web login throttle: locks per (name, address) pair and per address, slows per name.

    - ``pair``: failures of one name from one address lock that pair (5 free, then 1 s, 2 s, ...
      up to 15 min): guessing one account from one place.
    - ``address``: failures from one address across names lock the address (20 free, same
      backoff): one password tried against many names.
    - ``name``: failures of one name from anywhere only delay its password checks (up to
      ``max_slow_s``), never refuse them, so a third party cannot lock a user out of their own
      address; success from an address clears that pair and that address only.
    """

    def __init__(self, *, pair: LoginThrottle | None = None, address: LoginThrottle | None = None,
                 name: LoginThrottle | None = None, max_slow_s: float = 2.0) -> None:
        self.pair = pair or LoginThrottle(free_attempts=5)
        self.address = address or LoginThrottle(free_attempts=20)
        self.name = name or LoginThrottle(free_attempts=5, base_delay_s=0.25,
                                          max_delay_s=max_slow_s)

    @staticmethod
    def _pair(name: str, address: str | None) -> str:
        return f"{name.strip().lower()}\x00{address or '-'}"

    def retry_after(self, name: str, address: str | None = None) -> float:
        """Seconds until this name may try again from ``address`` (0 when allowed)."""
        return max(self.pair.retry_after(self._pair(name, address)),
                   self.address.retry_after(address or "-"))

    def slow_down(self, name: str) -> float:
        """Seconds to wait before checking a password for ``name`` (failed a lot lately)."""
        return self.name.retry_after(name)

    def failure(self, name: str, address: str | None = None) -> None:
        self.pair.failure(self._pair(name, address))
        self.address.failure(address or "-")
        self.name.failure(name)

    def refused(self, name: str, address: str | None = None) -> None:
        """An attempt while locked extends the lock of that pair and address (the prober's
        own), never the name's slow-down."""
        if self.pair.retry_after(self._pair(name, address)) > 0:
            self.pair.failure(self._pair(name, address))
        if self.address.retry_after(address or "-") > 0:
            self.address.failure(address or "-")

    def success(self, name: str, address: str | None = None) -> None:
        self.pair.success(self._pair(name, address))
        self.address.success(address or "-")


Throttle = LoginThrottle | LoginGuard
DEFAULT_THROTTLE: Throttle = LoginGuard()


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


_USER_BY_NAME = select(User).where(User.name == bindparam("name"))  # built once: every save


def get_user(session: Session, name: str) -> User | None:
    return session.scalar(_USER_BY_NAME, {"name": name})


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
    throttle: Throttle = DEFAULT_THROTTLE,
    hasher: PasswordHasher | None = None,
    address: str | None = None,
) -> User | None:
    """The active user with this name and password, or None (wrong, unknown, disabled or
    throttled; a throttled login is refused without checking the password). ``address`` is
    the client's (default: :data:`CLIENT_ADDRESS`); a name that failed often is checked
    only after a short delay (:class:`LoginGuard`)."""
    hasher = hasher or _default_hasher()
    address = address if address is not None else CLIENT_ADDRESS.get()
    wait = throttle.retry_after(name, address)
    if wait > 0:
        throttle.refused(name, address)
        logger.warning("login for %r from %s refused: throttled for %.0f s more", name,
                       address or "?", wait)
        return None
    slow = throttle.slow_down(name)
    if slow > 0:
        time.sleep(slow)  # a worker thread (make_auth): the server keeps serving
    user = get_user(session, name)
    stored = user.password_hash if user is not None and user.active else _dummy_hash(hasher)
    ok = _verify(hasher, stored, password)  # always hash once: same timing for unknown names
    if not ok or user is None or not user.active:
        throttle.failure(name, address)
        logger.info("failed login for %r from %s", name, address or "?")
        return None
    throttle.success(name, address)
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
        user.password_epoch = (user.password_epoch or 0) + 1
    if active is False or password is not None:
        revoke_user_sessions(session=session, user_id=user.id)
    session.flush()
    return user
