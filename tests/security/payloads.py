"""Script payloads for the escaping tests, and the seeding of the review app with them (through
the real endpoints, as a user would type them)."""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

IMG = '<img src=x onerror="window.__xss=1">'
SCRIPT = "<script>window.__xss=2</script>"
LINK = "[click me](javascript:window.__xss=3)"
BOLD = '**<b onmouseover="window.__xss=4">it\'s bold</b>** & `code`'
PAYLOADS = (IMG, SCRIPT, LINK, BOLD)

DATASET = '<img src=x onerror="window.__xss=5">ds'
GOOD_MEMBER = '<img src=x onerror="window.__xss=6">.png'
BAD_MEMBER = "<script>window.__xss=7</script>.png"
EXPORT_API = '<img src=x onerror="window.__xss=8">v1'
EXPORT_UI = '<img src=x onerror="window.__xss=9">v2'
MISSING_DATASET = '<img src=x onerror="window.__xss=10">missing'
STUDENT = '<img src=x onerror="window.__xss=11">'
NOTE = f"{IMG} then {SCRIPT}\nand {LINK}, {BOLD}"
REJECT_NOTE = f"{LINK} {IMG}"


@dataclass(frozen=True)
class World:
    task_id: int
    zip_path: Path


def payload_zip(path: Path) -> Path:
    """A zip with a valid photo and a broken file, both named with script payloads."""
    rng = np.random.default_rng(11)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(buf, "PNG")
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(GOOD_MEMBER, buf.getvalue())
        zf.writestr(BAD_MEMBER, b"not an image at all")
    return path


def seed_payloads(login, weights: str, tmp: Path) -> World:
    """Import the zip into a dataset named with a payload, pseudo-label it, store notes and a
    disagreement (N=2: one approve, one reject with a payload note) and an export named with a
    payload. Returns the task of the imported photo."""
    from gradio_client import handle_file

    boss, rev, rev2 = login("boss"), login("rev"), login("rev2")
    zip_path = payload_zip(tmp / "payloads.zip")
    boss.predict([handle_file(str(zip_path))], DATASET, api_name="/admin_import")
    boss.predict(DATASET, "depth-anything-v2-small", weights, 2, "none", 0,
                 api_name="/admin_pseudo_label")
    boss.predict(DATASET, 2, api_name="/admin_reviews_per_task")
    page = rev.predict(DATASET, api_name="/review_next")
    task_id, version = page[0], page[1]
    version = rev.predict(task_id, version, NOTE, api_name="/review_note")[1]
    rev.predict(task_id, version, "", api_name="/review_approve")
    version = rev2.predict(task_id, api_name="/review_open")[1]
    rev2.predict(task_id, version, ["sky"], REJECT_NOTE, api_name="/review_reject")
    boss.predict("nyu", "best", EXPORT_API, api_name="/admin_export")
    return World(task_id, zip_path)
