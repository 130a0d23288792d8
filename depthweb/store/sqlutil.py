"""Small SQL helpers shared by the blob store and the repository functions."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from depthweb.store.models import Base


def insert_ignore(
    session: Session, model: type[Base], values: dict[str, Any], conflict_columns: list[str]
) -> bool:
    """``INSERT ... ON CONFLICT (conflict_columns) DO NOTHING``; True when a row was inserted.

    Safe when two writers insert the same natural key at once (content hashes, idempotent jobs).
    """
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        stmt: Any = postgresql.insert(model).values(**values)
    elif dialect == "sqlite":
        stmt = sqlite.insert(model).values(**values)
    else:  # pragma: no cover - only SQLite and PostgreSQL are supported
        raise NotImplementedError(f"insert_ignore does not support {dialect}")
    stmt = stmt.on_conflict_do_nothing(index_elements=conflict_columns).returning(
        *model.__table__.primary_key.columns
    )
    return session.execute(stmt).first() is not None
