"""Store fixtures: every test using ``engine`` runs twice, on a real SQLite file in ``tmp_path``
and on a real PostgreSQL server started for the session (Debian's binaries; as root the server
runs as the ``postgres`` user, see ``depthweb.store.pgserver``). Each PostgreSQL test gets a
fresh database cloned (by pytest-postgresql's ``DatabaseJanitor``) from a template that was
built with the Alembic migrations, never with ``create_all``.

Without PostgreSQL binaries the PostgreSQL params skip locally and FAIL when ``CI=true``.
``DEPTHWEB_TEST_POSTGRES_URL`` (a superuser URL of an existing server) skips starting one.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import pytest
from argon2 import PasswordHasher
from pytest_postgresql.janitor import DatabaseJanitor
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from depthweb.store import SYSTEM, BlobStore, create_user, make_engine, session_scope, upgrade
from depthweb.store.models import User
from depthweb.store.pgserver import find_pg_bindir, throwaway_postgres
from depthweb.store.repo import add_image, add_prediction, create_dataset, ensure_task
from depthweb.types import DepthKind, Intrinsics, IntrinsicsSource

BACKENDS = ("sqlite", "postgresql")
TEMPLATE_DB = "depthweb_template"
PASSWORD = "correct horse battery"
_db_counter = itertools.count()


@pytest.fixture(scope="session")
def password() -> str:
    return PASSWORD


@pytest.fixture(scope="session")
def fast_hasher() -> PasswordHasher:
    """argon2id with small costs so tests stay fast (the app uses argon2-cffi's defaults)."""
    return PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


def _janitor(server_url: str, dbname: str, template: str | None = None) -> DatabaseJanitor:
    u = make_url(server_url)
    return DatabaseJanitor(
        user=u.username or "postgres",
        host=u.host or "127.0.0.1",
        port=u.port or 5432,
        password=u.password,
        dbname=dbname,
        template_dbname=template,
    )


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """URL of a PostgreSQL server holding a migrated template database."""
    external = os.environ.get("DEPTHWEB_TEST_POSTGRES_URL")
    if external:
        yield from _with_template(external)
        return
    if find_pg_bindir() is None:
        msg = "PostgreSQL server binaries (initdb, pg_ctl) are not installed"
        if os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}:
            pytest.fail(f"{msg}; CI=true requires the PostgreSQL store tests to run.")
        pytest.skip(msg)
    with throwaway_postgres(durable=False) as server:
        yield from _with_template(server.url())


def _with_template(server_url: str) -> Iterator[str]:
    janitor = _janitor(server_url, TEMPLATE_DB)
    janitor.drop()
    janitor.init()
    try:
        upgrade(make_url(server_url).set(database=TEMPLATE_DB))
        yield server_url
    finally:
        janitor.drop()


@pytest.fixture(
    params=[
        pytest.param(b, marks=[pytest.mark.postgres] if b == "postgresql" else []) for b in BACKENDS
    ]
)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def empty_db_url(backend: str, tmp_path, request: pytest.FixtureRequest) -> Iterator[str]:
    """URL of an empty database (no tables) on the backend under test."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'depthweb.sqlite'}"
        return
    server_url = request.getfixturevalue("pg_server_url")
    name = f"depthweb_t{os.getpid()}_{next(_db_counter)}"
    with _janitor(server_url, name):
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)


@pytest.fixture
def db_url(backend: str, tmp_path, request: pytest.FixtureRequest) -> Iterator[str]:
    """URL of a database migrated to head (SQLite: upgrade(); PostgreSQL: clone of the
    migrated template)."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'depthweb.sqlite'}"
        upgrade(url)
        yield url
        return
    server_url = request.getfixturevalue("pg_server_url")
    name = f"depthweb_t{os.getpid()}_{next(_db_counter)}"
    with _janitor(server_url, name, template=TEMPLATE_DB):
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url, pool_size=25, max_overflow=10)
    yield eng
    eng.dispose()


@pytest.fixture
def store(tmp_path) -> BlobStore:
    return BlobStore(tmp_path / "blobs")


@dataclass
class World:
    """A dataset with tasks and users, built through the repository functions."""

    engine: Engine
    store: BlobStore
    dataset_id: int
    task_ids: list[int]
    users: dict[str, User] = field(default_factory=dict)

    def user(self, name: str) -> User:
        return self.users[name]


@pytest.fixture
def make_users(engine: Engine, fast_hasher: PasswordHasher) -> Callable[..., dict[str, User]]:
    def _make(**roles: str) -> dict[str, User]:
        out = {}
        with session_scope(engine) as s:
            for name, role in roles.items():
                out[name] = create_user(
                    session=s,
                    actor=SYSTEM,
                    name=name,
                    password=PASSWORD,
                    role=role,
                    hasher=fast_hasher,
                )
        return out

    return _make


@pytest.fixture
def make_world(engine: Engine, store: BlobStore, make_users) -> Callable[..., World]:
    """``make_world(n_tasks=5, required_reviews=1, priorities=None, seed=0, **roles)``."""

    def _make(
        n_tasks: int = 5,
        required_reviews: int = 1,
        priorities: list[float] | None = None,
        seed: int = 0,
        **roles: str,
    ) -> World:
        rng = np.random.default_rng(seed)
        users = make_users(**(roles or {"admin": "admin", "rev": "reviewer", "view": "viewer"}))
        prios = priorities if priorities is not None else list(rng.random(n_tasks))
        task_ids = []
        with session_scope(engine) as s:
            ds = create_dataset(
                session=s, user=SYSTEM, name=f"ds{seed}", required_reviews=required_reviews
            )
            for i in range(n_tasks):
                task_ids.append(_add_task(s, store, ds.id, rng, i, prios[i]))
        return World(engine, store, ds.id, task_ids, users)

    return _make


def _add_task(session, store: BlobStore, dataset_id: int, rng, i: int, priority: float) -> int:
    h, w = 6, 8
    photo = store.put_bytes(rng.integers(0, 255, size=64, dtype=np.uint8).tobytes(), ".png")
    image, _ = add_image(
        session=session,
        user=SYSTEM,
        dataset_id=dataset_id,
        blob=photo,
        store=store,
        width=w,
        height=h,
        original_filename=f"img{i}.png",
    )
    depth = store.put_array(rng.random((h, w), dtype=np.float32) + 1.0)
    intr = Intrinsics.from_fov(w, h, 60.0, IntrinsicsSource.ASSUMED_FOV)
    pred, _ = add_prediction(
        session=session,
        user=SYSTEM,
        image_id=image.id,
        model="teacher",
        weights="rev1",
        kind=DepthKind.RELATIVE_DEPTH,
        intrinsics=intr,
        depth=depth,
        store=store,
        uncertainty=float(priority),
    )
    task, _ = ensure_task(
        session=session, user=SYSTEM, image_id=image.id, prediction_id=pred.id, priority=priority
    )
    return task.id
