"""Engines and sessions: SQLite tuned for many concurrent reviewers, PostgreSQL via psycopg 3.

SQLite connections get ``journal_mode=WAL``, ``synchronous=FULL`` (the WAL is synced at every
commit, so a power cut loses no committed transaction; ``NORMAL`` survives a killed process but
may lose the last commits on a power cut), ``busy_timeout`` and ``foreign_keys=ON``. The
sqlite3 driver's own transaction control is switched off (``isolation_level=None``) and
SQLAlchemy's ``begin`` event emits ``BEGIN IMMEDIATE`` for write sessions, so a writer takes
the write lock up front and waits (busy timeout) instead of failing with "database is locked"
when it upgrades a read lock half way through a transaction.
Read-only sessions use a plain deferred ``BEGIN`` and never block writers (WAL).

Write sessions of one process also queue in-process per engine (a fair writer queue): threads
wait their turn and wake as soon as the previous writer is done, instead of polling in SQLite's
busy handler (which sleeps up to 100 ms between tries and gave a p95 of ~200 ms with 10 writer
threads here). With ``group_commit`` (the default) the queue is a
:class:`~depthweb.store.group_commit.GroupCommit`: the saves queued behind one another share one
transaction, each in its own savepoint, and one COMMIT (one fsync) makes the batch durable before
any of its callers returns. Other processes still wait via ``busy_timeout``.

Sessions are opened at the edge (a web handler or CLI command) with :func:`session_scope`,
which commits on success and rolls back on any exception.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError
from sqlalchemy.orm import Session, sessionmaker

from depthweb.errors import DepthwebError
from depthweb.logsafe import redact
from depthweb.store.group_commit import GroupCommit

logger = logging.getLogger(__name__)

BEGIN_OPTION = "depthweb_sqlite_begin"
"""Execution option read by the ``begin`` listener: ``IMMEDIATE`` (default) or ``DEFERRED``."""

DEFAULT_BUSY_TIMEOUT_MS = 30_000

_WRITE_GATES: weakref.WeakKeyDictionary[Engine, tuple[threading.Lock, float]] = (
    weakref.WeakKeyDictionary()
)
_GROUPS: weakref.WeakKeyDictionary[Engine, GroupCommit] = weakref.WeakKeyDictionary()


def is_sqlite(engine_or_url: Engine | URL | str) -> bool:
    url = engine_or_url.url if isinstance(engine_or_url, Engine) else make_url(engine_or_url)
    return url.get_backend_name() == "sqlite"


SQLITE_POOL_SIZE = 32  # kept connections of a file database (plus as many overflow)


def normalize_url(url: str | URL) -> URL:
    """``postgresql://`` and ``postgres://`` become ``postgresql+psycopg://`` (psycopg 3)."""
    u = make_url(url)
    if u.drivername in ("postgresql", "postgres"):
        u = u.set(drivername="postgresql+psycopg")
    return u


def make_engine(
    url: str | URL,
    *,
    busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
    writer_queue: bool = True,
    group_commit: bool = True,
    **kwargs: Any,
) -> Engine:
    """An engine for ``url``; extra ``kwargs`` go to :func:`sqlalchemy.create_engine`.

    SQLite file databases get the pragmas and ``BEGIN IMMEDIATE`` listeners described in the
    module docstring (the parent directory is created) and, unless ``writer_queue=False``, the
    in-process writer queue used by :func:`session_scope` (``group_commit``: saves queued
    together share one COMMIT, see :mod:`depthweb.store.group_commit`). PostgreSQL URLs use
    psycopg 3 and ``pool_pre_ping``.
    """
    u = _checked_url(url)
    if u.get_backend_name() == "sqlite":
        if u.database and u.database != ":memory:" and not u.database.startswith("file:"):
            Path(u.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        connect_args = dict(kwargs.pop("connect_args", {}))
        connect_args.setdefault("timeout", busy_timeout_ms / 1000.0)
        connect_args.setdefault("check_same_thread", False)
        if u.database and u.database != ":memory:":
            # one server thread per request (Gradio's workers, the login-session check): keep
            # their connections instead of opening one (and its pragmas) per request beyond
            # QueuePool's default 5 + 10
            kwargs.setdefault("pool_size", SQLITE_POOL_SIZE)
            kwargs.setdefault("max_overflow", SQLITE_POOL_SIZE)
        engine = create_engine(u, connect_args=connect_args, **kwargs)
        _install_sqlite_listeners(engine, busy_timeout_ms)
        if writer_queue and group_commit:
            _GROUPS[engine] = GroupCommit(engine, busy_timeout_ms / 1000.0)
        elif writer_queue:
            _WRITE_GATES[engine] = (threading.Lock(), busy_timeout_ms / 1000.0)
        return engine
    if u.get_backend_name() == "postgresql":
        kwargs.setdefault("pool_pre_ping", True)
    try:
        return create_engine(u, **kwargs)
    except (ImportError, NoSuchModuleError) as exc:
        raise DepthwebError(
            "DEPTHWEB_DATABASE_URL is not a usable database URL: "
            f"{u.render_as_string(hide_password=True)} needs a driver that is not installed "
            f"({exc}); use sqlite:///PATH or postgresql://HOST/DB."
        ) from exc


def _checked_url(url: str | URL) -> URL:
    """The normalised URL, or a one-sentence :class:`DepthwebError` that never repeats the
    password (SQLAlchemy parses ports and query strings lazily, so both are forced here)."""
    try:
        u = normalize_url(url)
        _ = u.port, u.query
    except (ArgumentError, ValueError) as exc:
        raise DepthwebError(
            f"DEPTHWEB_DATABASE_URL is not a usable database URL ({redact(exc)}); write it as "
            "sqlite:///PATH or postgresql://HOST:PORT/DB."
        ) from None  # the parser's own error may quote part of the password
    return u


def _install_sqlite_listeners(engine: Engine, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Turn off the sqlite3 driver's implicit BEGIN; the "begin" listener emits our own.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = FULL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        mode = conn.get_execution_options().get(BEGIN_OPTION, "IMMEDIATE")
        if mode not in ("IMMEDIATE", "DEFERRED", "EXCLUSIVE"):
            raise ValueError(f"unknown SQLite BEGIN mode {mode!r}")
        conn.exec_driver_sql(f"BEGIN {mode}")


def session_factory(engine: Engine, *, readonly: bool = False) -> sessionmaker[Session]:
    """A sessionmaker for write sessions (SQLite ``BEGIN IMMEDIATE``) or read-only ones.

    ``expire_on_commit=False`` so objects returned by repository functions stay readable after
    the session that loaded them has committed.
    """
    bind = engine
    if readonly and is_sqlite(engine):
        bind = engine.execution_options(**{BEGIN_OPTION: "DEFERRED"})
    elif readonly and engine.url.get_backend_name() == "postgresql":
        bind = engine.execution_options(postgresql_readonly=True)
    return sessionmaker(bind=bind, expire_on_commit=False)


@contextmanager
def session_scope(engine: Engine, *, readonly: bool = False) -> Iterator[Session]:
    """One transaction: commit when the block ends, roll back (and re-raise) on any exception.

    Use ``readonly=True`` for pages that only read: on SQLite they do not take the write lock.
    On an SQLite engine with group commit the block runs in its own savepoint of a shared
    transaction and returns once that transaction is committed (the same guarantee).
    """
    group = None if readonly else _GROUPS.get(engine)
    if group is not None:
        with group.session() as session:
            yield session
        return
    gate = None if readonly else _WRITE_GATES.get(engine)
    acquired = False
    if gate is not None:
        acquired = gate[0].acquire(timeout=gate[1])
        if not acquired:  # never deadlock: fall back to SQLite's own busy handling
            logger.warning("in-process SQLite write lock not acquired in %.0f s", gate[1])
    try:
        with session_factory(engine, readonly=readonly).begin() as session:
            yield session
    finally:
        if acquired and gate is not None:
            gate[0].release()


def sqlite_pragmas(engine: Engine) -> dict[str, Any]:
    """The pragmas an SQLite connection of ``engine`` runs with (for checks and reports)."""
    with engine.connect() as conn:
        return {
            name: conn.execute(text(f"PRAGMA {name}")).scalar()
            for name in ("journal_mode", "synchronous", "busy_timeout", "foreign_keys")
        }


def sqlite_integrity_check(engine: Engine) -> str:
    """``PRAGMA integrity_check``: ``"ok"`` for a healthy database file."""
    with engine.connect() as conn:
        rows = conn.execute(text("PRAGMA integrity_check")).scalars().all()
    return "; ".join(str(r) for r in rows)


def group_commit_of(engine: Engine) -> GroupCommit | None:
    """The engine's group commit (SQLite with ``group_commit``), for counters and tests."""
    return _GROUPS.get(engine)
