"""Engine factory: SQLite pragmas and BEGIN IMMEDIATE, psycopg 3 for PostgreSQL, sessions."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.exc import DBAPIError, IntegrityError

from depthweb.store import make_engine, session_scope, upgrade
from depthweb.store.engine import normalize_url, sqlite_integrity_check, sqlite_pragmas
from depthweb.store.models import Dataset, Image


def test_sqlite_connections_are_tuned(tmp_path):
    url = f"sqlite:///{tmp_path / 'sub' / 'db.sqlite'}"  # parent dir is created
    engine = make_engine(url, busy_timeout_ms=1234)
    try:
        assert sqlite_pragmas(engine) == {
            "journal_mode": "wal",
            "synchronous": 2,  # FULL: a power cut loses no committed transaction
            "busy_timeout": 1234,
            "foreign_keys": 1,
        }
        assert sqlite_integrity_check(engine) == "ok"
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("given", "driver"),
    [
        ("postgresql://u@h/db", "postgresql+psycopg"),
        ("postgres://u@h/db", "postgresql+psycopg"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg"),
        ("sqlite:///x.db", "sqlite"),
    ],
)
def test_urls_use_psycopg3(given, driver):
    assert normalize_url(given).drivername == driver


def test_write_session_holds_the_write_lock_from_its_first_statement(tmp_path):
    path = tmp_path / "db.sqlite"
    upgrade(f"sqlite:///{path}")
    engine = make_engine(f"sqlite:///{path}")
    other = sqlite3.connect(path, timeout=0.05, isolation_level=None)
    try:
        with session_scope(engine) as s:
            s.execute(select(1))  # only a read, but BEGIN IMMEDIATE already reserved the file
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
        with session_scope(engine, readonly=True) as s:
            s.execute(select(1))  # deferred BEGIN: writers are not blocked
            other.execute("BEGIN IMMEDIATE")
            other.execute("ROLLBACK")
    finally:
        other.close()
        engine.dispose()


def test_read_modify_write_transactions_serialize_on_sqlite(tmp_path):
    """Two sessions read a counter then write it +1: BEGIN IMMEDIATE makes the second wait for
    the first, so no increment is lost and no "database is locked" surfaces."""
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    upgrade(url)
    engine = make_engine(url)
    with session_scope(engine) as s:
        s.add(Dataset(name="counter", required_reviews=1))
    errors: list[BaseException] = []

    def bump(delay: float) -> None:
        try:
            with session_scope(engine) as s:
                value = s.scalar(select(Dataset.required_reviews))
                time.sleep(delay)
                s.execute(update(Dataset).values(required_reviews=value + 1))
        except BaseException as exc:
            errors.append(exc)

    first = threading.Thread(target=bump, args=(0.3,))
    second = threading.Thread(target=bump, args=(0.0,))
    first.start()
    time.sleep(0.05)
    second.start()
    first.join()
    second.join()
    with session_scope(engine, readonly=True) as s:
        assert s.scalar(select(Dataset.required_reviews)) == 3
    assert errors == []
    engine.dispose()


def test_foreign_keys_are_enforced(engine):
    with pytest.raises(IntegrityError), session_scope(engine) as s:
        s.add(Image(dataset_id=999, sha256="0" * 64, blob_sha256="0" * 64, width=1, height=1))


def test_session_scope_rolls_back_on_error(engine):
    with pytest.raises(RuntimeError), session_scope(engine) as s:
        s.add(Dataset(name="gone", required_reviews=1))
        s.flush()
        raise RuntimeError("boom")
    with session_scope(engine, readonly=True) as s:
        assert s.scalar(select(Dataset).where(Dataset.name == "gone")) is None


@pytest.mark.parametrize("backend", [pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_readonly_sessions_refuse_writes_on_postgresql(engine, backend):
    insert = text(
        "INSERT INTO datasets (name, required_reviews, created_at) VALUES ('x', 1, now())"
    )
    with pytest.raises(DBAPIError, match="read-only"), session_scope(engine, readonly=True) as s:
        s.execute(insert)


@pytest.mark.parametrize(("url", "needle"), [
    ("postgresql://u:s3cretpw@host:notaport/db", "not a usable database URL"),
    ("notaurl", "not a usable database URL"),
    ("mysql://u:s3cretpw@host/db", "needs a driver that is not installed"),
])
def test_unusable_urls_are_one_sentence_without_the_password(url, needle):
    from depthweb.errors import DepthwebError

    with pytest.raises(DepthwebError, match=needle) as info:
        make_engine(url)
    assert "s3cretpw" not in str(info.value)
    assert str(info.value).startswith("DEPTHWEB_DATABASE_URL is not a usable database URL")
