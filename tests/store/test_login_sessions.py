"""Server-side login sessions (revocation, password epoch, idle and absolute expiry) and the
web login throttle (per name and address pair, per address; the name alone only slows down),
on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest

from depthweb.store import SYSTEM, LoginThrottle, authenticate, session_scope, update_user
from depthweb.store.auth import LoginGuard, get_user
from depthweb.store.models import utcnow
from depthweb.store.sessions import (
    check_session,
    hash_token,
    open_session,
    purge_sessions,
    revoke_session,
    touch_session,
)

IDLE, ABSOLUTE = 600.0, 3600.0


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _check(engine, token, now=None):
    with session_scope(engine, readonly=True) as s:
        return check_session(session=s, token=token, idle_s=IDLE, absolute_s=ABSOLUTE, now=now)


def _open(engine, name, token):
    with session_scope(engine) as s:
        return open_session(session=s, user_name=name, token=token, client="192.0.2.1")


def test_only_the_tokens_hash_is_stored_and_a_session_is_checked(engine, make_users):
    make_users(ann="reviewer")
    row = _open(engine, "ann", "secret-token")
    assert row.token_sha256 == hash_token("secret-token") != "secret-token"
    assert _check(engine, "secret-token").user == "ann"
    assert _check(engine, "another-token").reason == "unknown"
    with session_scope(engine) as s:
        assert open_session(session=s, user_name="nobody", token="t") is None


@pytest.mark.parametrize("change,reason", [
    ({"active": False}, "revoked"),
    ({"password": "a brand new password"}, "revoked"),
])
def test_disabling_or_a_new_password_ends_every_session(engine, make_users, fast_hasher,
                                                        change, reason):
    make_users(ann="reviewer", bob="reviewer")
    for token in ("a1", "a2"):
        _open(engine, "ann", token)
    _open(engine, "bob", "b1")
    with session_scope(engine) as s:
        update_user(session=s, actor=SYSTEM, name="ann", hasher=fast_hasher, **change)
    assert [_check(engine, t).reason for t in ("a1", "a2")] == [reason, reason]
    assert _check(engine, "b1").user == "bob"  # other users keep theirs
    with session_scope(engine) as s:  # enabling again does not revive old sessions
        update_user(session=s, actor=SYSTEM, name="ann", active=True)
    assert _check(engine, "a1").user is None


def test_a_session_made_before_a_password_change_is_void_even_if_not_revoked(engine,
                                                                             make_users):
    make_users(ann="reviewer")
    _open(engine, "ann", "old")
    with session_scope(engine) as s:  # the epoch moves on without the revocation
        get_user(s, "ann").password_epoch += 1
    assert _check(engine, "old").reason == "password changed"


def test_idle_and_absolute_expiry_and_logout(engine, make_users):
    make_users(ann="reviewer")
    _open(engine, "ann", "t")
    now = utcnow()
    assert _check(engine, "t", now + timedelta(seconds=IDLE - 5)).user == "ann"
    assert _check(engine, "t", now + timedelta(seconds=IDLE + 5)).reason == "idle"
    with session_scope(engine) as s:
        touch_session(session=s, token="t", now=now + timedelta(seconds=IDLE - 5))
    assert _check(engine, "t", now + timedelta(seconds=IDLE + 5)).user == "ann"
    assert _check(engine, "t", now + timedelta(seconds=ABSOLUTE + 5)).reason == "expired"
    with session_scope(engine) as s:
        assert revoke_session(session=s, token="t") == 1
        assert revoke_session(session=s, token="t") == 0
    assert _check(engine, "t").reason == "revoked"
    with session_scope(engine) as s:
        assert purge_sessions(session=s, older_than_s=-1) == 1


def _guard(clock: FakeClock) -> LoginGuard:
    return LoginGuard(pair=LoginThrottle(free_attempts=5, clock=clock),
                      address=LoginThrottle(free_attempts=20, clock=clock),
                      name=LoginThrottle(free_attempts=5, base_delay_s=0.01, max_delay_s=0.02,
                                         clock=clock))


def test_a_third_party_cannot_lock_the_user_out_of_their_own_address(engine, make_users,
                                                                      fast_hasher, password):
    make_users(ann="reviewer")
    guard = _guard(FakeClock())
    with session_scope(engine) as s:
        kw = {"session": s, "throttle": guard, "hasher": fast_hasher}
        for _ in range(30):
            assert authenticate(name="ann", password="guess", address="203.0.113.9", **kw) is None
        assert guard.retry_after("ann", "203.0.113.9") > 60  # the prober's pair is locked
        assert authenticate(name="ann", password=password, address="203.0.113.9", **kw) is None
        assert guard.slow_down("ann") <= 0.02  # the name is only slowed down ...
        user = authenticate(name="ann", password=password, address="198.51.100.4", **kw)
        assert user is not None and user.name == "ann"  # ... and ann logs in from home


def test_one_address_spraying_many_names_is_locked(engine, make_users, fast_hasher, password):
    make_users(ann="reviewer")
    guard = _guard(FakeClock())
    with session_scope(engine) as s:
        kw = {"session": s, "throttle": guard, "hasher": fast_hasher}
        for i in range(21):
            authenticate(name=f"user{i}", password="Summer2026!", address="203.0.113.7", **kw)
        assert authenticate(name="ann", password=password, address="203.0.113.7", **kw) is None
        assert authenticate(name="ann", password=password, address="203.0.113.8", **kw)
