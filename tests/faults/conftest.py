"""Fault-test fixtures: the review suite's (``backend`` runs each database test on a real
SQLite file and on a real PostgreSQL server; ``ctx`` is an engine + blob store under
``tmp_path``; ``users`` are admin, rev, rev2 and view; ``tiny_teacher`` a random-weight Depth
Anything V2)."""

from __future__ import annotations

from tests.review.conftest import (  # noqa: F401  (fixtures)
    backend,
    ctx,
    db_url,
    fast_hasher,
    image_folder,
    pg_server_url,
    tiny_teacher,
    users,
)
