"""The loop, end to end on CPU through the ``depthweb`` command (issue 5, Must show): import
images, pseudo-label them with a tiny teacher, approve and correct some (an anchor re-fit and an
ignore mask), export, train a tiny student, evaluate it on the real NYU frames, see it
registered, and pseudo-label another dataset with it: the student is the next teacher."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from argon2 import PasswordHasher
from sqlalchemy import select

from depthweb.services.review import ReviewContext, current_label, save_correction
from depthweb.services.review.pseudolabel import weights_key
from depthweb.store import create_user
from depthweb.store.auth import SYSTEM
from depthweb.store.models import Dataset, Image, Prediction, Task
from depthweb.store.repo import approve_task, reject_task
from tests.builders import build_tiny_depth_anything
from tests.conftest import require_shared_data
from tests.review.conftest import write_images
from tests.train_e2e.conftest import TINY

REPO = Path(__file__).resolve().parents[2]
TEACHER = "depth-anything-v2-small"
STUDENT = "rooms-student"


def review(data_dir: Path) -> dict[str, int]:
    """A reviewer corrects two labels (anchors on one, an ignore mask on the other), approves
    five more plus the anchored one, and rejects one; returns the task ids by role."""
    from depthweb.config import Settings

    fast = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    with ReviewContext.from_settings(Settings(data_dir=data_dir, device="cpu")) as ctx:
        with ctx.session() as s:
            rev = create_user(session=s, actor=SYSTEM, name="rev", password="pw-rev-123456",
                              role="reviewer", hasher=fast)
            tasks = list(s.scalars(select(Task).order_by(Task.id)))
            ids = [t.id for t in tasks]
            h, w = tasks[0].image.height, tasks[0].image.width
            disparity = current_label(s, ids[0], store=ctx.store).depth
        # The reviewer measured the nearest (largest disparity) and farthest points.
        near = np.unravel_index(np.nanargmax(disparity), disparity.shape)
        far = np.unravel_index(np.nanargmin(disparity), disparity.shape)
        anchors = [[int(near[1]), int(near[0]), 1.5], [int(far[1]), int(far[0]), 4.0]]
        anchored = save_correction(ctx, task_id=ids[0], user=rev, expected_version=0,
                                   action="anchors", payload={"anchors": anchors})
        sky = np.zeros((h, w), bool)
        sky[: h // 5] = True
        save_correction(ctx, task_id=ids[1], user=rev, expected_version=0, action="mask",
                        region=sky)
        with ctx.session() as s:
            approve_task(session=s, task_id=ids[0], user=rev,
                         expected_version=anchored.task_version)
            for tid in ids[2:7]:
                approve_task(session=s, task_id=tid, user=rev, expected_version=0)
            reject_task(session=s, task_id=ids[7], user=rev, expected_version=0,
                        reasons=["blur"])
    return {"anchored": ids[0], "masked": ids[1], "rejected": ids[7]}


def predictions(data_dir: Path, dataset: str) -> list[tuple[str, str, str]]:
    """(model, weights, kind) of every stored prediction of the dataset's images."""
    from depthweb.config import Settings

    with ReviewContext.from_settings(Settings(data_dir=data_dir)) as ctx, \
            ctx.session(readonly=True) as s:
        rows = s.execute(select(Prediction.model, Prediction.weights, Prediction.kind)
                         .join(Image, Prediction.image_id == Image.id)
                         .join(Dataset, Image.dataset_id == Dataset.id)
                         .where(Dataset.name == dataset)).all()
    return [(r.model, r.weights, str(r.kind)) for r in rows]


def models_json(data_dir: Path) -> list[dict]:
    """``python -m depthweb models --json`` in a fresh process (what a user would run)."""
    env = {**os.environ, "DEPTHWEB_DATA_DIR": str(data_dir), "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-m", "depthweb", "models", "--json"], env=env,
                         capture_output=True, text=True, timeout=120, check=True)
    return json.loads(out.stdout)


@pytest.mark.real_data
def test_reviewed_labels_train_a_student_that_becomes_the_next_teacher(tmp_path, cli):
    nyu = require_shared_data() / "nyu"
    data_dir = tmp_path / "data"  # the cli fixture's DEPTHWEB_DATA_DIR: SQLite + blobs + students
    teacher = build_tiny_depth_anything(tmp_path / "teacher")
    rooms = tmp_path / "rooms"
    write_images(rooms, range(12), scene=True)  # 12 rendered rooms / streets, 120x160

    assert cli("db", "upgrade")[0] == 0
    code, out, err = cli("import", rooms, "--dataset", "rooms")
    assert code == 0 and "12" in out, err
    code, out, err = cli("pseudo-label", "--dataset", "rooms", "-m", TEACHER,
                         "--weights", teacher, "--batch-size", "4")
    assert code == 0 and "12 labelled" in out, err
    tasks = review(data_dir)

    export = tmp_path / "export"
    code, out, err = cli("export", "--dataset", "rooms", "-o", export, "--val-fraction", "0")
    assert code == 0, err
    rows = {r["task_id"]: r for r in map(json.loads, (export / "manifest.jsonl").open())}
    assert len(rows) == 11 and tasks["rejected"] not in rows
    assert rows[tasks["anchored"]]["source"] == "corrected"
    assert rows[tasks["anchored"]]["kind"] == "metric_depth"
    assert rows[tasks["anchored"]]["status"] == "approved"
    assert rows[tasks["masked"]]["mask"] is not None
    assert sum(r["status"] == "approved" for r in rows.values()) == 6

    config = tmp_path / "tiny.yaml"  # no data section: the export is the data
    config.write_text(yaml.safe_dump({**TINY, "steps": 6}))
    run_dir = tmp_path / "runs" / "rooms"
    code, out, err = cli("train", "--data", export, "--config", config, "-o", run_dir,
                         "--name", STUDENT, "--eval-data", nyu)
    assert code == 0, err
    assert "trained 6 steps" in out and f"registered student {STUDENT}" in out
    assert [m["step"] for m in map(json.loads, (run_dir / "metrics.jsonl").open())] == \
        list(range(1, 7))

    results = tmp_path / "results.json"
    code, out, err = cli("eval", "-m", STUDENT, "--data", nyu, "-o", results)
    assert code == 0, err
    report = json.loads(results.read_text())
    nyu_result = report["results"][0]
    assert report["model"] == STUDENT and nyu_result["dataset"] == "nyu"
    assert nyu_result["frames"] == 3 and nyu_result["max_depth"] == 10.0
    assert 0 < nyu_result["mean"]["abs_rel"] < 1 and 0 < nyu_result["mean"]["delta1"] <= 1
    assert out.splitlines()[1].split()[:3] == [STUDENT, "nyu", "3"]

    listed = {m["name"]: m for m in models_json(data_dir)}
    assert listed[STUDENT]["family"] == "student" and listed[STUDENT]["cached"] is True
    meta = json.loads((data_dir / "students" / STUDENT / "meta.json").read_text())
    export_meta = json.loads((export / "export.json").read_text())
    assert meta["parent_teacher"] == TEACHER
    assert meta["parent_teacher_weights"] == weights_key(str(teacher.resolve()))
    assert meta["data_version"] == export_meta["manifest_sha256"]
    evaluated = meta["metrics"]["eval"]
    assert evaluated["student"]["nyu"]["abs_rel"] == nyu_result["mean"]["abs_rel"]
    assert evaluated["teacher_model"] == TEACHER and evaluated["teacher"]["nyu"]["abs_rel"] > 0

    write_images(tmp_path / "street", range(100, 104), scene=True)
    assert cli("import", tmp_path / "street", "--dataset", "street")[0] == 0
    code, out, err = cli("pseudo-label", "--dataset", "street", "-m", STUDENT)
    assert code == 0 and f"4 labelled by {STUDENT}" in out, err
    preds = predictions(data_dir, "street")
    assert len(preds) == 4
    assert set(preds) == {(STUDENT, weights_key(str((data_dir / "students" / STUDENT).resolve())),
                           "relative_disparity")}
