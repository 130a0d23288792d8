"""Review-service fixtures. The database fixtures are the store suite's (``backend`` runs every
test using ``ctx`` twice: a real SQLite file in ``tmp_path`` and a real PostgreSQL server
started for the session); ``ctx`` adds the blob store under a per-test data directory."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from argon2 import PasswordHasher

from depthweb.config import Settings
from depthweb.services.review import ReviewContext
from depthweb.store import SYSTEM, create_user
from depthweb.store.models import User
from tests.builders import build_tiny_depth_anything
from tests.store import conftest as store_fixtures

# The store suite's database fixtures, shared (same PostgreSQL template, same parametrization).
backend = store_fixtures.backend
pg_server_url = store_fixtures.pg_server_url
db_url = store_fixtures.db_url
fast_hasher = store_fixtures.fast_hasher
PASSWORD = store_fixtures.PASSWORD

TEACHER = "depth-anything-v2-small"


def smooth_image(seed: int, h: int = 48, w: int = 64) -> np.ndarray:
    """A seeded RGB uint8 (h, w, 3) image: smooth colour blobs (not noise, so PNGs stay small)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)
    return cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)


def scene_image(seed: int, h: int = 120, w: int = 160) -> np.ndarray:
    """A rendered synthetic room or street, RGB uint8 (h, w, 3). (The tiny random teacher's
    output only varies with the input for images of about this size and up.)"""
    from depthweb.training.synthetic import render_scene

    return render_scene(seed, h, w).rgb


def write_images(
    folder: Path, seeds, *, h: int = 48, w: int = 64, ext: str = ".png", scene: bool = False
) -> list[Path]:
    """One file per seed (``img<seed><ext>``): smooth blobs, or rendered scenes (120x160 unless
    h, w say otherwise) with ``scene``; returns the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for seed in seeds:
        path = folder / f"img{seed:03d}{ext}"
        rgb = scene_image(seed, *((h, w) if (h, w) != (48, 64) else (120, 160))) if scene \
            else smooth_image(seed, h, w)
        cv2.imwrite(str(path), rgb[..., ::-1])
        paths.append(path)
    return paths


def review_settings(root: Path, url: str) -> Settings:
    return Settings(data_dir=root / "data", database_url=url,
                    output_dir=root / "outputs", device="cpu")


@pytest.fixture
def ctx(db_url: str, tmp_path: Path) -> Iterator[ReviewContext]:
    context = ReviewContext.from_settings(review_settings(tmp_path, db_url))
    yield context
    context.close()


@pytest.fixture
def users(ctx: ReviewContext, fast_hasher: PasswordHasher) -> dict[str, User]:
    """admin, rev (reviewer), rev2 (reviewer) and view (viewer)."""
    roles = {"admin": "admin", "rev": "reviewer", "rev2": "reviewer", "view": "viewer"}
    with ctx.session() as s:
        return {name: create_user(session=s, actor=SYSTEM, name=name, password=PASSWORD,
                                  role=role, hasher=fast_hasher)
                for name, role in roles.items()}


@pytest.fixture(scope="session")
def tiny_teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Weights of a tiny random Depth Anything V2 (relative disparity), built once."""
    return build_tiny_depth_anything(tmp_path_factory.mktemp("teacher"))


@pytest.fixture
def image_folder(tmp_path: Path) -> Callable[..., Path]:
    def _make(seeds, **kw) -> Path:
        folder = tmp_path / "photos"
        write_images(folder, seeds, **kw)
        return folder

    return _make


def make_tasks(
    ctx: ReviewContext,
    depths: list[np.ndarray],
    *,
    kind: str = "relative_disparity",
    dataset: str = "scenes",
    model: str = "teacher",
    intrinsics=None,
) -> list[int]:
    """Import one image per depth map and store the map as its teacher prediction (through the
    store's repository functions); returns the task ids, in order."""
    from depthweb.services.review import ensure_dataset
    from depthweb.services.review.importer import encode_png
    from depthweb.store.repo import add_image, add_prediction, ensure_task
    from depthweb.types import Intrinsics

    ds = ensure_dataset(ctx, dataset, SYSTEM)
    task_ids = []
    for i, depth in enumerate(depths):
        h, w = depth.shape
        photo = ctx.store.put_bytes(encode_png(smooth_image(1000 + i, h, w)), ".png")
        arr = ctx.store.put_array(np.asarray(depth, np.float32))
        cam = intrinsics or Intrinsics.from_fov(w, h, 60.0)
        with ctx.session() as s:
            image, _ = add_image(session=s, user=SYSTEM, dataset_id=ds.id, blob=photo,
                                 store=ctx.store, width=w, height=h,
                                 original_filename=f"scene{i}.png")
            pred, _ = add_prediction(session=s, user=SYSTEM, image_id=image.id, model=model,
                                     weights="w1", kind=kind, intrinsics=cam, depth=arr,
                                     store=ctx.store, uncertainty=float(i))
            task, _ = ensure_task(session=s, user=SYSTEM, image_id=image.id,
                                  prediction_id=pred.id, priority=float(i))
            task_ids.append(task.id)
    return task_ids


def scene_disparity(seed: int, h: int = 48, w: int = 64) -> np.ndarray:
    """A relative disparity map (h, w): a tilted floor plane plus smooth bumps, all > 0."""
    rng = np.random.default_rng(seed)
    v, u = np.indices((h, w), dtype=np.float64)
    bumps = sum(rng.uniform(0.05, 0.2) * np.exp(-((u - rng.uniform(0, w)) ** 2
                                                    + (v - rng.uniform(0, h)) ** 2) / 60.0)
                for _ in range(3))
    return (0.3 + 0.02 * v + 0.003 * u + bumps).astype(np.float32)
