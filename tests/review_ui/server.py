"""A seeded review platform served by the real app in a subprocess, for gradio_client and
browser tests.

:func:`seed` (in the test process) migrates a fresh SQLite file under ``root/data``, adds the
users ``rev``, ``rev2`` (reviewers), ``view`` (viewer) and ``boss`` (admin), imports real photos
(three NYU frames into the dataset ``nyu``, two wild photos into ``wild``) and pseudo-labels them
with a tiny random-weight Depth Anything V2 (``tests/builders.py``). That teacher predicts one
constant away from the photo's last rows and columns, so the ``nyu`` tasks are then re-labelled
by :func:`relabel_with_ramp` (a smooth ramp stored through the store API), and a browser test
can anchor two points of clearly different predicted depth. :func:`start_review_app`
then runs this file as a script (``python server.py PORT``) with ``DEPTHWEB_REVIEW=on`` and the
same data directory; the child prints ``REVIEW_URL <url>`` once it serves requests. The server
is the whole one of ``depthweb.server``: ``url`` is the review platform (``.../review/``, behind
the login), ``studio_url`` the public Studio at the root.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
READY = "REVIEW_URL "
TEACHER = "depth-anything-v2-small"
RAMP_TEACHER = "smooth-ramp (test data)"
PASSWORD = "correct horse battery"
USERS = {"rev": "reviewer", "rev2": "reviewer", "view": "viewer", "boss": "admin"}
NYU = ("rgb_00000.jpg", "rgb_00050.jpg", "rgb_00100.jpg")
WILD = ("demo08.jpg", "monodepth2_test_image.jpg")


@dataclass
class ReviewServer:
    url: str
    root: Path
    data_dir: Path
    process: subprocess.Popen
    log_path: Path
    teacher_weights: Path
    env: dict = field(default_factory=dict)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    @property
    def studio_url(self) -> str:
        """The public Studio at the server's root (``url`` is the review platform)."""
        from depthweb.ui.auth import REVIEW_PATH

        return self.url.removesuffix("/").removesuffix(REVIEW_PATH.strip("/"))

    def settings(self):
        from depthweb.config import Settings

        return Settings(data_dir=self.data_dir, output_dir=self.root / "outputs", device="cpu",
                        review="on")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def seed(root: Path, shared_data: Path, teacher_weights: Path) -> Path:
    """Create and fill the database and blob store under ``root/data``; returns that dir."""
    from argon2 import PasswordHasher

    from depthweb.config import Settings
    from depthweb.services.review import ReviewContext, import_images, pseudo_label
    from depthweb.store import SYSTEM, create_user, upgrade

    data_dir = root / "data"
    settings = Settings(data_dir=data_dir, output_dir=root / "outputs", device="cpu")
    upgrade(settings.resolved_database_url)
    fast = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    with ReviewContext.from_settings(settings) as ctx:
        with ctx.session() as s:
            for name, role in USERS.items():
                create_user(session=s, actor=SYSTEM, name=name, password=PASSWORD, role=role,
                            hasher=fast)
        sources = {"nyu": [shared_data / "nyu" / "rgb" / n for n in NYU],
                   "wild": [shared_data / "wild" / n for n in WILD]}
        for dataset, files in sources.items():
            report = import_images(ctx, files, dataset=dataset, user=SYSTEM)
            assert report.added == len(files), report.summary()
            labelled = pseudo_label(ctx, dataset, TEACHER, user=SYSTEM,
                                    weights=str(teacher_weights), device="cpu", batch_size=3)
            assert labelled.labelled == len(files), labelled.summary()
        relabel_with_ramp(ctx, "nyu")
    return data_dir


def ramp_disparity(height: int, width: int) -> np.ndarray:
    """A smooth relative disparity (H, W) float32 from 0.5 (top left) to 3.0 (bottom right):
    a floor seen from standing height, nearer towards the bottom and a little to the right.
    Neighbouring pixels differ by at most 2.0 / (H - 1), well under 1 % of its range."""
    rows = np.linspace(0.0, 2.0, height, dtype=np.float32)[:, None]
    cols = np.linspace(0.0, 0.5, width, dtype=np.float32)[None, :]
    return (0.5 + rows + cols).astype(np.float32)


def relabel_with_ramp(ctx, dataset: str) -> None:
    """Give each untouched task of ``dataset`` the teacher :data:`RAMP_TEACHER`: a
    :func:`ramp_disparity` of the image's size (with the intrinsics of its current prediction),
    added with ``add_prediction`` and followed by the task through ``ensure_task``, as a newer
    teacher's labels are (the tiny random teacher's prediction is constant away from the last
    rows and columns: a click a pixel off there could flip two anchors' order)."""
    from sqlalchemy import select

    from depthweb.store import SYSTEM
    from depthweb.store.models import Task
    from depthweb.store.repo import add_prediction, ensure_task, require_dataset
    from depthweb.types import Intrinsics

    with ctx.session() as s:
        dataset_id = require_dataset(s, dataset).id
        tasks = s.scalars(select(Task).where(Task.dataset_id == dataset_id)).all()
        for task in tasks:
            old = task.prediction
            ref = ctx.store.put_array(ramp_disparity(*old.depth_blob.shape))
            cam = Intrinsics(old.fx, old.fy, old.cx, old.cy, old.intrinsics_source,
                             old.intrinsics_note)
            pred, _ = add_prediction(session=s, user=SYSTEM, image_id=task.image_id,
                                     model=RAMP_TEACHER, weights=ref.sha256, kind=old.kind,
                                     intrinsics=cam, depth=ref, store=ctx.store)
            moved, _ = ensure_task(session=s, user=SYSTEM, image_id=task.image_id,
                                   prediction_id=pred.id, priority=task.priority)
            assert moved.prediction_id == pred.id, f"task {task.id} kept its prediction"


def client_logins(url: str, downloads: Path):
    """``login(name, password=PASSWORD)``: a gradio_client Client logged in to ``url`` as
    ``name``, cached per name, downloading into ``downloads``."""
    from gradio_client import Client

    clients: dict[str, Client] = {}

    def login(name: str, password: str = PASSWORD) -> Client:
        if name not in clients:
            clients[name] = Client(url, auth=(name, password), verbose=False,
                                   download_files=str(downloads), analytics_enabled=False)
        return clients[name]

    return login


def start_review_app(root: Path, data_dir: Path, teacher_weights: Path,
                     timeout_s: float = 300.0, extra_env: dict | None = None) -> ReviewServer:
    """Serve the app (review on) over ``data_dir`` in a subprocess; wait until it serves.

    ``extra_env`` is applied last (e.g. ``DEPTHWEB_MODEL_DIR`` so the Studio's ``/predict``
    has a tiny model, or ``DEPTHWEB_QUEUE_MAX_SIZE``)."""
    from tests.app.studio_server import free_port, launch_and_wait

    cwd = root / "cwd"
    cwd.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "DEPTHWEB_DATA_DIR": str(data_dir), "DEPTHWEB_OUTPUT_DIR": str(root / "outputs"),
        "DEPTHWEB_REVIEW": "on", "DEPTHWEB_DEVICE": "cpu", "DEPTHWEB_MAX_UPLOAD_MB": "8",
        "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(root / "hf-cache"),
        "GRADIO_ANALYTICS_ENABLED": "False", "GRADIO_TEMP_DIR": str(root / "gradio"),
        "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "2",
    }
    env.pop("DEPTHWEB_DATABASE_URL", None)
    env.pop("DEPTHWEB_MODEL_DIR", None)
    env.update(extra_env or {})
    log_path = root / "server.log"
    cmd = [sys.executable, str(Path(__file__).resolve()), str(free_port())]
    proc, url = launch_and_wait(cmd, cwd, env, log_path, READY, timeout_s)
    server = ReviewServer(url, root, data_dir, proc, log_path,
                          teacher_weights, env)
    if not url:
        server.stop()
        raise RuntimeError(f"the review app did not start in {timeout_s:.0f} s:\n{server.log()}")
    return server


if __name__ == "__main__":
    from tests.app.studio_server import serve_in_child

    serve_in_child(int(sys.argv[1]), READY, review=True)
