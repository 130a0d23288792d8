"""Users: argon2 hashes, authentication, failed-login throttle, server-side role checks."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher

from depthweb.errors import InputError
from depthweb.store import (
    SYSTEM,
    LoginThrottle,
    PermissionDeniedError,
    authenticate,
    create_user,
    require_role,
    session_scope,
    update_user,
)
from depthweb.store.auth import get_user
from depthweb.store.models import Role


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_passwords_are_salted_argon2_hashes(engine, make_users, password):
    users = make_users(ann="reviewer", bob="reviewer")
    h1, h2 = users["ann"].password_hash, users["bob"].password_hash
    assert h1.startswith("$argon2id$") and h2.startswith("$argon2id$")
    assert h1 != h2 and password not in h1  # same password, different salts


def test_authenticate(engine, make_users, fast_hasher, password):
    make_users(ann="reviewer", off="viewer")
    throttle = LoginThrottle(clock=FakeClock())
    with session_scope(engine) as s:
        update_user(session=s, actor=SYSTEM, name="off", active=False)
    with session_scope(engine) as s:
        kw = {"session": s, "throttle": throttle, "hasher": fast_hasher}
        user = authenticate(name="ann", password=password, **kw)
        assert user is not None and user.name == "ann" and user.role == Role.REVIEWER
        assert authenticate(name="ann", password=password + "x", **kw) is None
        assert authenticate(name="nobody", password=password, **kw) is None
        assert authenticate(name="off", password=password, **kw) is None


def test_failed_logins_are_throttled_with_growing_delays(engine, make_users, fast_hasher, password):
    make_users(ann="reviewer")
    clock = FakeClock()
    throttle = LoginThrottle(free_attempts=3, base_delay_s=2.0, max_delay_s=60.0, clock=clock)
    with session_scope(engine) as s:
        kw = {"session": s, "throttle": throttle, "hasher": fast_hasher}
        for _ in range(3):
            assert authenticate(name="ann", password="wrong-password", **kw) is None
        assert throttle.retry_after("ann") == pytest.approx(2.0)
        # while locked even the right password is refused (and not checked)
        assert authenticate(name="ANN ", password=password, **kw) is None
        clock.t += 2.1
        assert authenticate(name="ann", password="wrong-again", **kw) is None
        assert throttle.retry_after("ann") == pytest.approx(4.0)  # doubled
        for _ in range(10):
            clock.t += 61
            authenticate(name="ann", password="wrong-again", **kw)
        assert throttle.retry_after("ann") == pytest.approx(60.0)  # capped
        clock.t += 61
        assert authenticate(name="ann", password=password, **kw) is not None
        assert throttle.retry_after("ann") == 0.0  # success resets
        assert throttle.retry_after("someone-else") == 0.0


def test_weak_hashes_are_upgraded_on_login(engine, make_users, password):
    make_users(ann="reviewer")
    strong = PasswordHasher(time_cost=2, memory_cost=2048, parallelism=1)
    with session_scope(engine) as s:
        user = authenticate(
            session=s, name="ann", password=password, throttle=LoginThrottle(), hasher=strong
        )
        assert user is not None
    with session_scope(engine, readonly=True) as s:
        assert not strong.check_needs_rehash(get_user(s, "ann").password_hash)


def test_user_management_is_for_admins(engine, make_users, fast_hasher, password):
    users = make_users(boss="admin", ann="reviewer", vic="viewer")
    with session_scope(engine) as s:
        for actor in (users["ann"], users["vic"]):
            with pytest.raises(PermissionDeniedError, match="needs admin"):
                create_user(
                    session=s,
                    actor=actor,
                    name="new",
                    password=password,
                    role="reviewer",
                    hasher=fast_hasher,
                )
            with pytest.raises(PermissionDeniedError):
                update_user(session=s, actor=actor, name="vic", role="admin")
        # a user may change their own password only
        with pytest.raises(PermissionDeniedError, match="current password"):
            update_user(
                session=s,
                actor=users["vic"],
                name="vic",
                password="new password 1",
                current_password="guess",
                hasher=fast_hasher,
            )
        update_user(
            session=s,
            actor=users["vic"],
            name="vic",
            password="new password 1",
            current_password=password,
            hasher=fast_hasher,
        )
        with pytest.raises(InputError, match="already exists"):
            create_user(
                session=s,
                actor=users["boss"],
                name="ann",
                password=password,
                role="viewer",
                hasher=fast_hasher,
            )
        with pytest.raises(InputError, match="at least"):
            create_user(session=s, actor=SYSTEM, name="short", password="abc", role="viewer")
        with pytest.raises(InputError, match="Unknown role"):
            create_user(session=s, actor=SYSTEM, name="x", password=password, role="god")
        with pytest.raises(InputError, match="last active admin"):
            update_user(session=s, actor=users["boss"], name="boss", role="reviewer")
    with session_scope(engine) as s:
        assert (
            authenticate(
                session=s,
                name="vic",
                password="new password 1",
                throttle=LoginThrottle(),
                hasher=fast_hasher,
            )
            is not None
        )


def test_require_role():
    require_role(SYSTEM, Role.ADMIN)
    with pytest.raises(PermissionDeniedError, match="not logged in"):
        require_role(None, Role.VIEWER)
