"""Small SQL helpers shared by the blob store and the repository functions."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from depthweb.store.models import Base


def connection(session: Session) -> Connection:
    """The session's connection (its transaction), for Core execution without the ORM layer;
    pending ORM changes are flushed first, as the session's autoflush would before a query."""
    if session.autoflush:
        session.flush()  # returns at once when there is nothing to flush
    return session.connection()


@lru_cache(maxsize=64)
def _insert_ignore_stmt(dialect: str, model: type[Base], conflict_columns: tuple[str, ...]) -> Any:
    """Built once per (dialect, model, key), a Core insert of the model's table (the values,
    named after its columns, are bound at execution)."""
    if dialect == "postgresql":
        stmt: Any = postgresql.insert(model.__table__)
    elif dialect == "sqlite":
        stmt = sqlite.insert(model.__table__)
    else:  # pragma: no cover - only SQLite and PostgreSQL are supported
        raise NotImplementedError(f"insert_ignore does not support {dialect}")
    return stmt.on_conflict_do_nothing(index_elements=list(conflict_columns)).returning(
        *model.__table__.primary_key.columns
    )


def insert_ignore(
    session: Session, model: type[Base], values: dict[str, Any], conflict_columns: list[str]
) -> bool:
    """``INSERT ... ON CONFLICT (conflict_columns) DO NOTHING``; True when a row was inserted.

    Safe when two writers insert the same natural key at once (content hashes, idempotent jobs).
    """
    stmt = _insert_ignore_stmt(session.get_bind().dialect.name, model, tuple(conflict_columns))
    return connection(session).execute(stmt, values).first() is not None
