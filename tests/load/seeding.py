"""The platform under load: one launched app serving the Studio (``/predict`` with a tiny
random-weight Depth Anything V2 from ``DEPTHWEB_MODEL_DIR``) and the Review tabs (SQLite file
seeded by :func:`tests.review_ui.server.seed`, plus ``n_users`` reviewer accounts ``load00``...
and a dataset ``load`` of small crops of real photos, each task needing ``required_reviews``
approvals; see :func:`add_load_data`), and the database checks run after the load.

Used by ``tests/load/test_load.py`` and ``bench/bench_load.py`` (one copy of the workload).
"""

from __future__ import annotations

import shutil
import sqlite3
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from tests.review_ui.server import PASSWORD, TEACHER, ReviewServer, seed, start_review_app

DATASET = "load"
PREDICT_PHOTO = ("wild", "monodepth2_test_image.jpg")  # 638x235, a real photo
CROP_SOURCES = ("wild/demo08.jpg", "wild/demo04.jpg", "wild/demo11.jpg",
                "nyu/rgb/rgb_00000.jpg", "nyu/rgb/rgb_00050.jpg", "kitti/rgb/0000000005.png")
CROP_SIZE = (192, 144)  # (w, h): review pages stay cheap to render


def user_names(n: int) -> list[str]:
    return [f"load{i:02d}" for i in range(n)]


@dataclass
class LoadPlatform:
    """A running app plus what the checks need: the load tasks, every task's version before."""

    server: ReviewServer
    users: list[str]
    task_ids: list[int]
    versions_before: dict[int, int] = field(default_factory=dict)
    photo: Path | None = None
    anchors: dict[int, list[list[float]]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def password(self) -> str:
        return PASSWORD

    def stop(self) -> None:
        self.server.stop()


def crop_photos(shared: Path, out_dir: Path, n: int, seed: int) -> list[Path]:
    """``n`` distinct seeded crops (resized to :data:`CROP_SIZE`) of real photos, as PNGs."""
    rng = np.random.default_rng(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    sources = [np.asarray(Image.open(shared / s).convert("RGB")) for s in CROP_SOURCES]
    files = []
    for i in range(n):
        rgb = sources[i % len(sources)]
        h, w = rgb.shape[:2]
        ch, cw = int(h * rng.uniform(0.5, 0.9)), int(w * rng.uniform(0.5, 0.9))
        y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        crop = Image.fromarray(rgb[y:y + ch, x:x + cw]).resize(CROP_SIZE, Image.Resampling.BILINEAR)
        files.append(out_dir / f"crop{i:03d}.png")
        crop.save(files[-1])
    return files


def build_teacher(model_dir: Path) -> Path:
    """The tiny teacher at ``model_dir/<TEACHER>`` (also what ``/predict`` serves)."""
    from tests.builders import build_tiny_depth_anything

    built = build_tiny_depth_anything(model_dir.parent / "model-build")
    target = model_dir / TEACHER
    model_dir.mkdir(parents=True, exist_ok=True)
    shutil.move(str(built), str(target))
    return target


def add_load_data(data_dir: Path, root: Path, shared: Path, weights: Path, *, n_users: int,
                  n_tasks: int, required_reviews: int, seed_value: int = 0) -> None:
    """The load reviewers and the ``load`` dataset, in a database made by :func:`seed`.

    Every account gets the same argon2 hash, made once with the product's parameters: a login
    then costs one verification, not the upgrade re-hash a fast test hash would trigger."""
    from argon2 import PasswordHasher

    from depthweb.config import Settings
    from depthweb.services.review import ReviewContext, import_images, pseudo_label
    from depthweb.store import SYSTEM, create_user
    from depthweb.store.repo.catalog import create_dataset

    settings = Settings(data_dir=data_dir, output_dir=root / "outputs", device="cpu")
    fast = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    shared_hash = PasswordHasher().hash(PASSWORD)
    photos = crop_photos(shared, root / "crops", n_tasks, seed_value)
    with ReviewContext.from_settings(settings) as ctx:
        with ctx.session() as s:
            for name in user_names(n_users):
                create_user(session=s, actor=SYSTEM, name=name, password=PASSWORD,
                            role="reviewer", hasher=fast).password_hash = shared_hash
            create_dataset(session=s, user=SYSTEM, name=DATASET,
                           required_reviews=required_reviews)
        report = import_images(ctx, photos, dataset=DATASET, user=SYSTEM)
        assert report.added == n_tasks, report.summary()
        labelled = pseudo_label(ctx, DATASET, TEACHER, user=SYSTEM, weights=str(weights),
                                device="cpu", batch_size=8, uncertainty="none")
        assert labelled.labelled == n_tasks, labelled.summary()


def task_versions(db_path: Path, dataset: str | None = DATASET) -> dict[int, int]:
    """``{task id: version}`` for one dataset's tasks (every task with ``dataset=None``)."""
    with closing(sqlite3.connect(db_path)) as con:
        sql = "SELECT t.id, t.version FROM tasks t JOIN datasets d ON d.id = t.dataset_id"
        rows = (con.execute(sql + " WHERE d.name = ?", (dataset,)) if dataset
                else con.execute(sql)).fetchall()
    return {int(i): int(v) for i, v in rows}


def start_platform(root: Path, shared: Path, *, n_users: int = 50, n_tasks: int = 40,
                   required_reviews: int = 3, queue_max_size: int = 100,
                   seed_value: int = 0) -> LoadPlatform:
    """Seed everything under ``root`` and launch the app; :meth:`LoadPlatform.stop` ends it.

    The app starts (a subprocess, in a thread here) right after :func:`seed`, while the load
    accounts and tasks are added: it reads users and tasks per request, not at start."""
    weights = build_teacher(root / "models")
    data_dir = seed(root, shared, weights)
    env = {"DEPTHWEB_MODEL_DIR": str(root / "models"), "DEPTHWEB_DEFAULT_MODEL": TEACHER,
           "DEPTHWEB_QUEUE_MAX_SIZE": str(queue_max_size),
           # the load clients' X-Forwarded-For names each visitor's own address (workload.py)
           "DEPTHWEB_TRUSTED_PROXIES": "127.0.0.1"}
    with ThreadPoolExecutor(1) as pool:
        starting = pool.submit(start_review_app, root, data_dir, weights, extra_env=env)
        try:
            add_load_data(data_dir, root, shared, weights, n_users=n_users, n_tasks=n_tasks,
                          required_reviews=required_reviews, seed_value=seed_value)
        except BaseException:
            if starting.exception() is None:
                starting.result().stop()
            raise
        server = starting.result()
    load_tasks = sorted(task_versions(db_file(server)))
    every_task = task_versions(db_file(server), dataset=None)  # the others must not change
    photo = shared.joinpath(*PREDICT_PHOTO)
    return LoadPlatform(server, user_names(n_users), load_tasks, every_task, photo,
                        anchor_rows(data_dir, load_tasks))


def anchor_rows(data_dir: Path, task_ids: list[int]) -> dict[int, list[list[float]]]:
    """Per task, two scale anchors a reviewer could give: two pixels whose teacher values
    differ by more than 5 %, at depths consistent with the teacher's shape (1/disparity, the
    first at 2 m). The tiny random teacher is flat over most of a photo, where two anchors
    are refused ("equal predicted values"), so the clients cannot pick pixels at random."""
    from depthweb.config import Settings
    from depthweb.services.review import ReviewContext
    from depthweb.services.review.labels import teacher_map
    from depthweb.store.models import Task

    rows: dict[int, list[list[float]]] = {}
    settings = Settings(data_dir=data_dir, device="cpu")
    with ReviewContext.from_settings(settings) as ctx, ctx.session(readonly=True) as s:
        for task_id in task_ids:
            d = teacher_map(ctx.store, s.get(Task, task_id).prediction).depth
            ok = np.isfinite(d) & (d > 0)
            flat = np.flatnonzero(ok)
            if flat.size < 2:
                continue
            lo, hi = flat[np.argmin(d.flat[flat])], flat[np.argmax(d.flat[flat])]
            if d.flat[hi] <= 1.05 * d.flat[lo]:
                continue
            (v1, v2), (u1, u2) = np.unravel_index([lo, hi], d.shape)
            k = 2.0 * float(d.flat[lo])  # depth = k / disparity
            rows[task_id] = [[int(u1), int(v1), 2.0],
                             [int(u2), int(v2), round(k / float(d.flat[hi]), 4)]]
    return rows


def db_file(server: ReviewServer) -> Path:
    return server.data_dir / "depthweb.sqlite"


def check_database(db_path: Path, before: dict[int, int], saves: Counter, claims: Counter,
                   approvals: Counter) -> list[str]:
    """Problems found in the database after the load ([] = consistent).

    - ``PRAGMA integrity_check`` is ``ok`` and no foreign key is dangling;
    - each task's version grew by exactly the saves its clients counted (a claim leaves the
      version as it is; tasks nobody touched kept theirs);
    - each task got exactly as many new revisions as the clients counted successful saves, and
      as many reviews as they counted successful approvals;
    - each task's revisions form one chain (parent = previous head, versions increasing).
    """
    problems: list[str] = []
    with closing(sqlite3.connect(db_path)) as con:
        integrity = con.execute("PRAGMA integrity_check").fetchone()[0]
        if integrity != "ok":
            problems.append(f"integrity_check: {integrity}")
        if con.execute("PRAGMA foreign_key_check").fetchall():
            problems.append("foreign_key_check found dangling references")
        after = dict(con.execute("SELECT id, version FROM tasks").fetchall())
        reviews = Counter(dict(con.execute(
            "SELECT task_id, count(*) FROM reviews GROUP BY task_id").fetchall()))
        revs = con.execute("SELECT task_id, id, parent_id, task_version FROM revisions "
                           "ORDER BY task_id, task_version").fetchall()
    by_task: dict[int, list[tuple]] = {}
    for task_id, rev_id, parent, version in revs:
        by_task.setdefault(int(task_id), []).append((rev_id, parent, version))
    for task_id, v0 in before.items():
        grown = after[task_id] - v0
        if grown != saves[task_id]:
            problems.append(f"task {task_id}: version +{grown}, clients counted "
                            f"{saves[task_id]} saves ({claims[task_id]} claims)")
        chain = by_task.get(task_id, [])
        new = [r for r in chain if r[2] > v0]
        if len(new) != saves[task_id]:
            problems.append(f"task {task_id}: {len(new)} new revisions, clients counted "
                            f"{saves[task_id]} saves")
        if reviews[task_id] != approvals[task_id]:
            problems.append(f"task {task_id}: {reviews[task_id]} reviews, clients counted "
                            f"{approvals[task_id]} approvals")
        problems += _chain_problems(task_id, chain)
    return problems


def _chain_problems(task_id: int, chain: list[tuple]) -> list[str]:
    """``chain``: (revision id, parent id, task version) ordered by version."""
    out = []
    previous = None
    for rev_id, parent, version in chain:
        if parent != (previous[0] if previous else None):
            out.append(f"task {task_id}: revision {rev_id} has parent {parent}, "
                       f"expected {previous[0] if previous else None}")
        if previous and version <= previous[2]:
            out.append(f"task {task_id}: revision versions not increasing at {rev_id}")
        previous = (rev_id, parent, version)
    return out
