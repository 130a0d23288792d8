"""Group commit for SQLite write sessions: concurrent saves share one COMMIT (one fsync).

With ``synchronous=FULL`` every COMMIT syncs the WAL (about 7.5 ms on this machine's disk), so
one commit per save caps a process at ~130 saves/s however short the saves are. A
:class:`GroupCommit` (one per engine; :func:`depthweb.store.engine.session_scope` uses it for
write sessions) lets the saves that arrive while one is running join the same transaction:

- Saves still run one at a time (one connection, one write transaction ``BEGIN IMMEDIATE`` per
  batch), each in its own ``SAVEPOINT``: a save that raises is rolled back to its savepoint
  alone, its caller gets its own exception, and the other saves of the batch are untouched.
  Every check a save makes (role, claim, version) reads the database as the saves before it in
  the batch left it, exactly as if they had committed one by one.
- The last save of a batch (nobody is queued behind it) commits the batch: one ``COMMIT``, one
  fsync; the saves that arrive meanwhile wait and form the next batch.
- Every caller returns only after the COMMIT that contains its save has returned (is durable);
  if that COMMIT fails, every save of the batch raises (none is reported saved).

Files (blobs) are written before their save starts, so a row never commits before its file.
Read-only sessions are not affected (WAL: they read the last committed state). Other processes
still wait for the write lock via ``busy_timeout``. PostgreSQL needs none of this (its own
group commit, ``commit_delay``), so only SQLite engines get one.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)


class _Batch:
    """The saves of one transaction: how many succeeded, and the COMMIT's outcome."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.saves = 0
        self.committed = threading.Event()
        self.error: BaseException | None = None


class GroupCommit:
    """Runs write sessions of ``engine`` one at a time in shared transactions (module doc).

    Waiting saves queue first come, first served; the turn is handed to exactly one of them
    (no thundering herd). ``timeout_s``: how long a save waits for its turn before giving up
    with an ``OperationalError`` (as SQLite's busy timeout would)."""

    def __init__(self, engine: Engine, timeout_s: float) -> None:
        self.engine = engine
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._busy = False  # a save (or a COMMIT) holds the turn
        self._queue: deque[threading.Event] = deque()  # saves waiting for the turn
        self._batch: _Batch | None = None
        self._owner = threading.local()
        self.batches = 0  # committed batches and the saves in them (benchmarks, tests)
        self.saves = 0

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One save: a session in its own savepoint of the current batch; returns once the
        batch holding it is committed (or raises)."""
        if getattr(self._owner, "active", False):
            raise RuntimeError("a write session was opened inside another one in the same "
                               "thread; finish the first one before starting the next")
        self._take_turn()
        try:
            batch = self._open_batch()
        except BaseException:
            self._pass_turn()
            raise
        self._owner.active = True
        ok = False
        try:
            session = Session(bind=batch.conn, join_transaction_mode="create_savepoint",
                              expire_on_commit=False)
            try:
                with session.begin():
                    yield session
                ok = True
            finally:
                session.close()
        finally:
            self._owner.active = False
            self._finish(batch, ok)
        if batch.error is not None:
            raise batch.error

    # --------------------------------------------------------------------------- internals
    def _take_turn(self) -> None:
        with self._lock:
            if not self._busy:
                self._busy = True
                return
            mine = threading.Event()
            self._queue.append(mine)
        if mine.wait(self.timeout_s):
            return  # the turn was handed to this thread
        with self._lock:
            if mine.is_set():
                return  # handed over just as the wait ran out
            self._queue.remove(mine)
        raise OperationalError("write queue", {}, TimeoutError(
            f"no turn to write in {self.timeout_s:.0f} s (database busy)"))

    def _pass_turn(self) -> None:
        """Hand the turn to the next queued save (or free it); call with the turn held."""
        with self._lock:
            if self._queue:
                self._queue.popleft().set()
            else:
                self._busy = False

    def _open_batch(self) -> _Batch:
        if self._batch is None:  # only the holder of the turn gets here
            conn = self.engine.connect()
            try:
                conn.begin()  # BEGIN IMMEDIATE (the engine's "begin" listener)
            except BaseException:
                conn.close()
                raise
            self._batch = _Batch(conn)
        return self._batch

    def _finish(self, batch: _Batch, ok: bool) -> None:
        """Hand the turn to the next queued save (it joins this batch) and wait for the
        commit; when none is queued, commit the batch now."""
        with self._lock:
            batch.saves += int(ok)
            commit = not self._queue
            if commit:
                self._batch = None
            else:
                self._queue.popleft().set()
        if not commit:
            batch.committed.wait()
            return
        try:
            self._commit(batch)
        finally:
            batch.committed.set()
            self._pass_turn()

    def _commit(self, batch: _Batch) -> None:
        conn = batch.conn
        try:
            if batch.saves == 0:
                conn.rollback()  # only failed saves: nothing to keep
            elif not _in_transaction(conn):
                raise OperationalError("COMMIT", {}, RuntimeError(
                    "the database rolled the batch back (an error aborted its transaction)"))
            else:
                conn.commit()
                self.batches += 1
                self.saves += batch.saves
        except BaseException as exc:  # every save of the batch learns its fate
            batch.error = exc
            log.error("group commit of %d save(s) failed: %s", batch.saves, exc)
            try:
                conn.rollback()
            except Exception:
                conn.invalidate()
        finally:
            conn.close()


def _in_transaction(conn: Connection) -> bool:
    dbapi: Any = conn.connection.dbapi_connection
    return bool(getattr(dbapi, "in_transaction", True))
