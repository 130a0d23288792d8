"""The role table of every named endpoint of both mounted apps, and plausible arguments for each.

``STUDIO`` lists the public Studio's endpoints (at ``/``: anyone, no login; computation only,
results in per-request output folders). ``ROLES`` classifies each endpoint of the review
platform (at ``/review``, behind its login): ``public-read`` (any logged-in active user;
reads), ``reviewer`` (reviewers and admins), ``admin`` (admins only). A test fails when either
app has an endpoint these tables do not classify, so a new endpoint must be added here (and
given a server-side check).

``arguments(name, case)`` builds arguments that would succeed for a user with the right role,
so a refusal can only come from the role check.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

PUBLIC, REVIEWER, ADMIN = "public-read", "reviewer", "admin"

STUDIO = frozenset({"/predict", "/compare", "/stereo", "/video"})
"""The public Studio's endpoints (anonymous callers welcome)."""

ROLES: dict[str, str] = {
    # Review tab.
    "/review_open": PUBLIC,
    "/review_next": REVIEWER, "/review_approve": REVIEWER, "/review_reject": REVIEWER,
    "/review_save_mask": REVIEWER, "/review_fill": REVIEWER,
    "/review_save_anchors": REVIEWER, "/review_save_ordinal": REVIEWER,
    "/review_note": REVIEWER, "/review_undo": REVIEWER,
    "/review_3d": PUBLIC, "/review_ping": PUBLIC,
    # Admin tab.
    "/admin_overview": ADMIN, "/admin_adjudicate": ADMIN, "/admin_gold": ADMIN,
    "/admin_reviews_per_task": ADMIN, "/admin_users": ADMIN, "/admin_add_user": ADMIN,
    "/admin_set_user": ADMIN, "/admin_set_password": ADMIN, "/admin_import": ADMIN,
    "/admin_pseudo_label": ADMIN, "/admin_export": ADMIN, "/admin_jobs": ADMIN,
    # Train tab.
    "/train_heldout": ADMIN, "/train_lists": ADMIN, "/train_start": ADMIN,
    "/train_status": ADMIN, "/train_stop": ADMIN,
    # Hugging Face OAuth (Spaces only): Gradio's LoginButton asks whether a session exists.
    "/_check_login_status": PUBLIC,
}
SPACE_ONLY = {"/_check_login_status"}
"""Endpoints that exist only when the app runs on a Space with OAuth."""

ANCHORS = ["x (px)", "y (px)", "true depth (m)"]
PAIRS = ["closer x", "closer y", "farther x", "farther y"]


@dataclass(frozen=True)
class Case:
    """What the arguments refer to: a real task (id, version, label shape (H, W)), a photo
    and a painted layer on disk, and the teacher weights the server can load."""

    task_id: int
    version: int
    shape: tuple[int, int]
    photo: Path
    layer: Path
    weights: str


def make_case(ctx, tmp: Path, weights: str) -> Case:
    """A :class:`Case` on the first task of the ``nyu`` dataset as it is now."""
    from sqlalchemy import select

    from depthweb.store.models import Dataset, Task

    with ctx.session(readonly=True) as s:
        task = s.scalars(select(Task).join(Dataset, Dataset.id == Task.dataset_id)
                         .where(Dataset.name == "nyu").order_by(Task.id)).first()
        shape = tuple(int(x) for x in task.prediction.depth_blob.shape)
        task_id, version = task.id, task.version
    rng = np.random.default_rng(6)
    photo = tmp / "upload.png"
    Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(photo)
    rgba = np.zeros((*shape, 4), np.uint8)
    rgba[4:30, 4:40] = (255, 0, 255, 255)
    layer = tmp / "layer.png"
    Image.fromarray(rgba, "RGBA").save(layer)
    return Case(task_id, version, shape, photo, layer, weights)


def _clip(folder: Path) -> Path:
    """A short phone-style clip (made once per folder) for ``/video``."""
    from tests.video.clips import phone_clip

    path = folder / "clip.mov"
    return path if path.is_file() else phone_clip(path, frames=6, rotation=0, vfr=False)


def arguments(name: str, case: Case) -> tuple:
    """Positional arguments for ``client.predict(*args, api_name=name)``."""
    from gradio_client import handle_file

    t, v = case.task_id, case.version
    editor = {"background": None, "layers": [handle_file(str(case.layer))], "composite": None}
    photo = handle_file(str(case.photo))
    table = {
        "/predict": (photo, "depthweb-student", 0, 0, 0, ""),
        "/compare": (photo, ["depthweb-student", "depth-anything-v2-small"], ""),
        "/stereo": (photo, photo, None, 500, 0.1, 0, ""),
        "/video": (handle_file(str(_clip(case.photo.parent))), "depthweb-student", 6, 1, 0, -1),
        "/review_open": (t,),
        "/review_next": ("nyu",),
        "/review_approve": (t, v, "approved by a test"),
        "/review_reject": (t, v, ["sky"], "rejected by a test"),
        "/review_save_mask": (t, v, editor, "union"),
        "/review_fill": (t, v, editor, "far"),
        "/review_save_anchors": (t, v, {"headers": ANCHORS, "data": [[10, 10, 2.0]]}),
        "/review_save_ordinal": (t, v, {"headers": PAIRS, "data": [[10, 40, 10, 5]]}),
        "/review_note": (t, v, "a note"),
        "/review_undo": (t, v),
        "/review_3d": (t,),
        "/review_ping": (),
        "/admin_overview": ("nyu",),
        "/admin_adjudicate": ("nyu", t, v, "approve", "final"),
        "/admin_gold": ("nyu", t, v, "approve"),
        "/admin_reviews_per_task": ("nyu", 3),
        "/admin_users": (),
        "/admin_add_user": ("mallory", "mallory's password", "admin"),
        "/admin_set_user": ("rev", "admin", True),  # a reviewer promoting itself
        "/admin_set_password": ("boss", "taken over by a test"),  # the admin's password
        "/admin_import": ([photo], "nyu"),
        "/admin_pseudo_label": ("nyu", "depth-anything-v2-small", case.weights, 2, "none", 1),
        "/admin_export": ("nyu", "best", "stolen-export"),
        "/admin_jobs": (),
        "/train_heldout": ("evil-student",),
        "/train_lists": (),
        "/train_start": (None, "tiny", 2, "evil-student", None),  # export: choices load late
        "/train_status": (),
        "/train_stop": (),
    }
    return table[name]
