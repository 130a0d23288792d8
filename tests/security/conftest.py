"""Fixtures for the security tests: one seeded review app per test session (its own data dir,
so nothing here disturbs tests/review_ui), logged-in gradio_client clients, raw HTTP sessions
(anonymous or logged in), and a snapshot of everything a request could change.

The seed is :func:`tests.review_ui.server.seed` (users ``rev``, ``rev2`` reviewers, ``view``
viewer, ``boss`` admin; datasets ``nyu`` and ``wild``) plus an export under
``<data dir>/exports/seed-v1`` and a file in the students registry, so the file-serving probes
have every kind of private file to aim at.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from tests.builders import build_tiny_depth_anything
from tests.conftest import real_data_fixture
from tests.review_ui.server import (
    PASSWORD,
    ReviewServer,
    client_logins,
    seed,
    start_review_app,
)

STUDENT_PROBE = "probe-student"


def _seed_extras(data_dir: Path, root: Path) -> None:
    """An export, a (deliberately incomplete, so never loaded) students registry entry and a
    reviewer ``temp`` for the disabled-account test."""
    from argon2 import PasswordHasher

    from depthweb.config import Settings
    from depthweb.services.review import ReviewContext
    from depthweb.services.review.admin import exports_root
    from depthweb.services.review.exporter import export_dataset
    from depthweb.store import SYSTEM, create_user

    settings = Settings(data_dir=data_dir, output_dir=root / "outputs", device="cpu")
    fast = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    with ReviewContext.from_settings(settings) as ctx:
        export_dataset(ctx, "nyu", "seed-v1", user=SYSTEM, base_dir=exports_root(ctx))
        with ctx.session() as s:  # disabled by a test while its session is open
            create_user(session=s, actor=SYSTEM, name="temp", password=PASSWORD,
                        role="reviewer", hasher=fast)
    student = data_dir / "students" / STUDENT_PROBE
    student.mkdir(parents=True)
    (student / "meta.json").write_text('{"format": "depthweb-student/1", "name": "other"}\n')


@pytest.fixture(scope="session")
@real_data_fixture
def sec_server(tmp_path_factory, pytestconfig) -> ReviewServer:
    from tests.conftest import require_shared_data

    shared = require_shared_data()
    root = tmp_path_factory.mktemp("security-app")
    weights = build_tiny_depth_anything(root / "teacher")
    data_dir = seed(root, shared, weights)
    _seed_extras(data_dir, root)
    models = root / "models"  # the Studio's /compare needs two models: the tiny teacher too
    models.mkdir()
    (models / "depth-anything-v2-small").symlink_to(weights, target_is_directory=True)
    server = start_review_app(root, data_dir, weights,
                              extra_env={"DEPTHWEB_MODEL_DIR": str(models)})
    pytestconfig.add_cleanup(server.stop)
    return server


@pytest.fixture
def ctx(sec_server: ReviewServer):
    from depthweb.services.review import ReviewContext

    with ReviewContext.from_settings(sec_server.settings()) as context:
        yield context


@pytest.fixture(scope="session")
def login(sec_server: ReviewServer, tmp_path_factory) -> Callable:
    """``login(name)``: a gradio_client Client logged in as ``name`` (cached per name)."""
    return client_logins(sec_server.url, tmp_path_factory.mktemp("sec-downloads"))


@pytest.fixture(scope="session")
def http(sec_server: ReviewServer) -> Callable[[str | None], httpx.Client]:
    """``http(name)``: an httpx client with ``name``'s login cookie (None: anonymous)."""
    sessions: dict[str | None, httpx.Client] = {}

    def _http(name: str | None) -> httpx.Client:
        if name not in sessions:
            c = httpx.Client(base_url=sec_server.url, timeout=30, follow_redirects=False)
            if name is not None:
                r = c.post("/login", data={"username": name, "password": PASSWORD})
                assert r.status_code == 200, (name, r.status_code, r.text[:200])
            sessions[name] = c
        return sessions[name]

    yield _http
    for c in sessions.values():
        c.close()


def _tree(root: Path) -> dict[str, str]:
    """relative path -> sha256 of every file under ``root`` (empty when it is missing)."""
    if not root.is_dir():
        return {}
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def state_snapshot(ctx, data_dir: Path) -> dict:
    """Everything a request could change: every table's row count, task versions and
    statuses, users (role, active), and the files of the blob store, the exports
    folder, the students registry and the training runs."""
    from depthweb.store.models import Base, Task, User

    with ctx.session(readonly=True) as s:
        counts = {t.name: int(s.scalar(select(func.count()).select_from(t)))
                  for t in Base.metadata.sorted_tables}
        tasks = {t.id: (t.version, t.status, t.assignee_id, t.is_gold)
                 for t in s.scalars(select(Task).order_by(Task.id))}
        users = {u.name: (u.role, u.active)  # a login may re-hash an outdated hash
                 for u in s.scalars(select(User).order_by(User.id))}
    files = {name: _tree(data_dir / name) for name in ("blobs", "exports", "students", "runs")}
    return {"counts": counts, "tasks": tasks, "users": users, "files": files}
