"""Fixtures for the review UI: one seeded review app per test session (subprocess, SQLite file,
real photos pseudo-labelled by a tiny local teacher, the ``nyu`` ones then re-labelled with a
smooth ramp: see ``server.py``), gradio_client logins, and direct access to the same database
for checks. (Debian Chromium: the ``browser`` fixture of tests/conftest.py.)"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tests.builders import build_tiny_depth_anything
from tests.conftest import real_data_fixture
from tests.review_ui.server import (
    ReviewServer,
    client_logins,
    seed,
    start_review_app,
)

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "review"


@pytest.fixture(scope="session")
@real_data_fixture
def review_server(tmp_path_factory, pytestconfig) -> ReviewServer:
    from tests.conftest import require_shared_data

    shared = require_shared_data()
    root = tmp_path_factory.mktemp("review-app")
    weights = build_tiny_depth_anything(root / "teacher")
    data_dir = seed(root, shared, weights)
    server = start_review_app(root, data_dir, weights)
    pytestconfig.add_cleanup(server.stop)
    return server


@pytest.fixture
def ctx(review_server: ReviewServer):
    """A ReviewContext on the server's database and blob store (for checks and exports)."""
    from depthweb.services.review import ReviewContext

    with ReviewContext.from_settings(review_server.settings()) as context:
        yield context


@pytest.fixture(scope="session")
def login(review_server: ReviewServer, tmp_path_factory) -> Callable:
    """``login(name)``: a gradio_client Client logged in as ``name`` (cached per name)."""
    return client_logins(review_server.url, tmp_path_factory.mktemp("client-downloads"))


def db_snapshot(ctx) -> dict:
    """Everything a save could change: task versions and statuses, row counts, blob files."""
    from depthweb.store.models import Blob, Export, Review, Revision, Task

    with ctx.session(readonly=True) as s:
        tasks = {t.id: (t.version, t.status, t.assignee_id)
                 for t in s.scalars(select(Task).order_by(Task.id))}
        counts = {m.__tablename__: int(s.scalar(select(func.count()).select_from(m)))
                  for m in (Revision, Review, Blob, Export)}
    files = sorted(p.name for p in Path(ctx.store.root).rglob("*") if p.is_file())
    return {"tasks": tasks, "counts": counts, "blob_files": files}


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
