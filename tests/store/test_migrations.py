"""The schema comes from the Alembic migrations, and the ORM models match them exactly."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from depthweb.errors import DepthwebError
from depthweb.store import make_engine
from depthweb.store.migrate import (
    current_revision,
    downgrade,
    head_revision,
    require_current_schema,
    upgrade,
)
from depthweb.store.models import Base


def _diff(url: str) -> list:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            return compare_metadata(ctx, Base.metadata)
    finally:
        engine.dispose()


def _tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_upgrade_builds_the_schema_the_models_describe(empty_db_url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no alembic.ini lookup relative to the working directory
    assert current_revision(empty_db_url) is None
    assert _tables(empty_db_url) == set()
    upgrade(empty_db_url)
    assert current_revision(empty_db_url) == head_revision()
    assert _tables(empty_db_url) == set(Base.metadata.tables) | {"alembic_version"}
    assert _diff(empty_db_url) == []


def test_models_differ_from_an_empty_database(empty_db_url):
    """The comparison can fail: against an empty database it lists every table."""
    added = {d[1].name for d in _diff(empty_db_url) if d[0] == "add_table"}
    assert added == set(Base.metadata.tables)


def test_upgrade_twice_is_a_no_op_and_downgrade_reverses(empty_db_url):
    upgrade(empty_db_url)
    upgrade(empty_db_url)
    assert current_revision(empty_db_url) == head_revision()
    downgrade(empty_db_url, "base")
    assert _tables(empty_db_url) <= {"alembic_version"}
    assert current_revision(empty_db_url) is None
    upgrade(empty_db_url)
    assert _diff(empty_db_url) == []


def test_require_current_schema_tells_what_to_run(empty_db_url):
    with pytest.raises(DepthwebError, match="depthweb db upgrade"):
        require_current_schema(empty_db_url)
    upgrade(empty_db_url)
    require_current_schema(empty_db_url)
