"""Ray fixtures: one local Ray for the session (2 CPUs, no dashboard), joined by the tests
and, through ``--address``, by ``depthweb`` child processes; plus the review suite's database
fixtures (``ctx`` runs each test on a real SQLite file and on a real PostgreSQL server)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

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

START_ATTEMPTS = 3


@pytest.fixture(scope="session")
def ray_address() -> Iterator[str]:
    """The GCS address of a local Ray with 2 CPUs, started once for the session."""
    ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'ray[data]'")
    for attempt in range(START_ATTEMPTS):
        try:
            ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING,
                     log_to_driver=False)
            break
        except Exception:  # Ray waits only 30 s for its raylet: a loaded machine misses that
            ray.shutdown()
            if attempt == START_ATTEMPTS - 1:
                raise
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
