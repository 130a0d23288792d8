"""Fixtures for the bad-input corpus: tiny local models, a seeded review store for the Python
API and the CLI, and one launched app (Studio + Review + Admin, login on) for gradio_client.

One server serves every web surface: the whole server started with ``DEPTHWEB_MODEL_DIR``
pointing at tiny Depth Anything models, the review platform (login on) at ``/review`` and the
public Studio (``/predict``, ``/compare``, ``/stereo``) at the root (the same server a Space
runs, with the review feature on).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.badinput.corpus import photo
from tests.badinput.corpus_review import GT_H, GT_IMAGE, GT_W

STUDENT = "depthweb-student"
"""The bundled student: fast on the CPU, always on the machine; the API and CLI use it."""
RELATIVE = "depth-anything-v2-small"
METRIC = "depth-anything-v2-metric-indoor-small"
PASSWORD = "correct horse battery"
USERS = {"boss": "admin", "rev": "reviewer"}


@dataclass(frozen=True)
class Models:
    root: Path

    @property
    def relative(self) -> Path:
        return self.root / RELATIVE


@pytest.fixture(scope="session")
def models(tmp_path_factory) -> Models:
    """Tiny random-weight DA-V2 relative and metric-indoor models under their registry names."""
    from tests.app.studio_server import build_models

    root = tmp_path_factory.mktemp("badinput-models") / "models"
    root.mkdir()
    build_models(root)
    return Models(root)


def seed_store(data_dir: Path) -> None:
    """A migrated SQLite store under ``data_dir``: users boss (admin) and rev (reviewer), the
    dataset ``scenes`` (two photos pseudo-labelled by the bundled student) and ``gt``
    (``scene.png``, no prediction)."""
    from argon2 import PasswordHasher

    from depthweb.config import Settings
    from depthweb.services.review import ReviewContext, import_images, pseudo_label
    from depthweb.store import SYSTEM, create_user, upgrade

    settings = Settings(data_dir=data_dir, output_dir=data_dir.parent / "outputs", device="cpu")
    upgrade(settings.resolved_database_url)
    photos = data_dir.parent / "seed-photos"
    photos.mkdir(exist_ok=True)
    for i in (1, 2):
        Image.fromarray(photo(100 + i, 96, 128)).save(photos / f"room{i}.png")
    Image.fromarray(photo(110, GT_H, GT_W)).save(photos / GT_IMAGE)
    fast = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    with ReviewContext.from_settings(settings) as ctx:
        with ctx.session() as s:
            for name, role in USERS.items():
                create_user(session=s, actor=SYSTEM, name=name, password=PASSWORD, role=role,
                            hasher=fast)
        rooms = [photos / "room1.png", photos / "room2.png"]
        assert import_images(ctx, rooms, dataset="scenes", user=SYSTEM).added == 2
        assert import_images(ctx, [photos / GT_IMAGE], dataset="gt", user=SYSTEM).added == 1
        done = pseudo_label(ctx, "scenes", STUDENT, user=SYSTEM, device="cpu",
                            uncertainty="none")
        assert done.labelled == 2, done.summary()


@pytest.fixture(scope="session")
def store_dir(tmp_path_factory) -> Path:
    """A seeded store for the Python API and in-process CLI tests (not the web server's)."""
    data_dir = tmp_path_factory.mktemp("badinput-store") / "data"
    seed_store(data_dir)
    return data_dir


@pytest.fixture
def settings(store_dir: Path, tmp_path: Path, monkeypatch):
    """Settings on the seeded store; the environment says the same, for in-process CLI calls."""
    from depthweb.config import Settings, get_settings

    monkeypatch.setenv("DEPTHWEB_DATA_DIR", str(store_dir))
    monkeypatch.setenv("DEPTHWEB_DEVICE", "cpu")
    get_settings.cache_clear()
    return Settings(data_dir=store_dir, output_dir=tmp_path / "outputs", device="cpu")


@pytest.fixture
def ctx(settings) -> Iterator:
    from depthweb.services.review import ReviewContext

    with ReviewContext.from_settings(settings) as context:
        yield context


@dataclass
class Web:
    url: str
    data_dir: Path
    server: object
    login: Callable
    studio: Callable

    def settings(self):
        from depthweb.config import Settings

        return Settings(data_dir=self.data_dir, device="cpu", review="on",
                        output_dir=self.data_dir.parent / "outputs")


@pytest.fixture(scope="session")
def web(tmp_path_factory, pytestconfig, models) -> Web:
    """The app (review on, tiny models) in a subprocess over its own seeded store."""
    from gradio_client import Client

    from tests.review_ui.server import start_review_app

    root = tmp_path_factory.mktemp("badinput-web")
    data_dir = root / "data"
    seed_store(data_dir)
    server = start_review_app(root, data_dir, models.relative,
                              extra_env={"DEPTHWEB_MODEL_DIR": str(models.root),
                                         "DEPTHWEB_DEFAULT_MODEL": RELATIVE})
    pytestconfig.add_cleanup(server.stop)
    downloads = root / "client-downloads"
    clients: dict[tuple[str, bool], Client] = {}

    def login(name: str = "boss", download: bool = True) -> Client:
        """A logged-in client (cached); ``download=False`` leaves output files on the server
        (faster, for requests whose JSON output is enough)."""
        if (name, download) not in clients:
            clients[name, download] = Client(
                server.url, auth=(name, PASSWORD), verbose=False, analytics_enabled=False,
                download_files=str(downloads) if download else False)
        return clients[name, download]

    def studio(download: bool = True) -> Client:
        """An anonymous client of the public Studio (cached)."""
        if ("", download) not in clients:
            clients["", download] = Client(
                server.studio_url, verbose=False, analytics_enabled=False,
                download_files=str(downloads) if download else False)
        return clients["", download]

    return Web(server.url, data_dir, server, login, studio)


@pytest.fixture
def web_ctx(web: Web) -> Iterator:
    """A ReviewContext on the web server's database and blob store (for checks)."""
    from depthweb.services.review import ReviewContext

    with ReviewContext.from_settings(web.settings()) as context:
        yield context


@pytest.fixture(scope="session")
def good_photo(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("badinput-good") / "good.png"
    Image.fromarray(photo(99)).save(path)
    return path


def first_task(ctx, dataset: str = "scenes") -> tuple[int, int]:
    """(task id, version) of the dataset's first task."""
    from sqlalchemy import select

    from depthweb.store.models import Dataset, Task

    with ctx.session(readonly=True) as s:
        task = s.scalars(select(Task).join(Dataset, Dataset.id == Task.dataset_id)
                         .where(Dataset.name == dataset).order_by(Task.id)).first()
        return task.id, task.version


def depth_close(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and np.allclose(a, b, equal_nan=True)
