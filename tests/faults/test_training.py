"""Must show: ``depthweb train`` (tiny config, a checkpoint every step) killed with SIGKILL at a
random step, in the middle of writing a checkpoint, in the middle of deleting an old one, in
the middle of writing the final student, and right after registering it; each ``--resume``
continues from the newest complete checkpoint (a half-written or half-deleted one is never
listed or loaded), and the last one finishes with exactly the configured steps (one log line
each), registers the student once, and has the weights of a run that was never stopped."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from depthweb.config import Settings
from depthweb.services.train import build_config
from depthweb.training.checkpoint import STATE_FILE, checkpoint_dir, list_checkpoints
from depthweb.training.loop import read_metrics, train
from depthweb.training.registry import list_students, students_root
from depthweb.training.student import load_student
from tests.faults import kit
from tests.train_e2e.conftest import TINY, tiny_export

STEPS = 12
CONFIG = {**TINY, "steps": STEPS, "checkpoint_every": 1, "keep_checkpoints": 2, "threads": 1}
NAME = "fault-s1"
MID_CHECKPOINT = {"target": "depthweb.training.checkpoint:save_student", "when": "after",
                  "nth": 2}
MID_DELETE = {"target": "shutil:rmtree", "when": "before", "arg_has_file": STATE_FILE,
              "delete": "model.safetensors"}
MID_STUDENT = {"target": "safetensors.torch:save_file", "when": "after", "arg": 1,
               "arg_contains": "student/model.safetensors"}
REGISTERED = {"target": "depthweb.training.registry:register_student", "when": "after"}


def _checkpoints_are_whole(run) -> list[int]:
    """Every listed checkpoint loads (student + trainer state); returns their steps."""
    steps = []
    for path in list_checkpoints(run):
        load_student(path)
        steps.append(torch.load(path / STATE_FILE, weights_only=True)["step"])
    return steps


def _student_is_whole_or_absent(run) -> None:
    student = run / "student"
    if student.exists():
        load_student(student)


def _killed(argv, data_dir, tmp_path, name, *specs, until=None) -> None:
    child = kit.launch(argv, kit.child_env(data_dir, None, *specs), tmp_path / "work", name)
    if until is None:
        child.wait_paused()
    else:
        child.wait_for(until, "progress")
    child.kill()


def _straight_run(export, root) -> dict:
    """The same config trained in one go, in this process."""
    threads = torch.get_num_threads()
    try:
        result = train(build_config(export, CONFIG), root, progress=False)
    finally:
        torch.set_num_threads(threads)
    return load_file(str(result.student_dir / "model.safetensors"))


@pytest.mark.slow
def test_killed_training_resumes_from_whole_checkpoints(tmp_path):
    export = tiny_export(tmp_path / "export")
    cfg_path = tmp_path / "tiny.json"
    cfg_path.write_text(json.dumps(CONFIG))
    run, data_dir = tmp_path / "run", tmp_path / "data"
    settings = Settings(data_dir=data_dir, output_dir=tmp_path / "out", device="cpu")
    argv = ["train", "--data", str(export), "--config", str(cfg_path), "-o", str(run),
            "--name", NAME]
    resume = [*argv, "--resume"]
    k = int(np.random.default_rng(6).integers(2, 5))

    _killed(argv, data_dir, tmp_path, "random", kit.backstop(),
            until=lambda: len(read_metrics(run)) >= k)
    assert _checkpoints_are_whole(run) and len(read_metrics(run)) < STEPS

    _killed(resume, data_dir, tmp_path, "mid-checkpoint", MID_CHECKPOINT, kit.backstop())
    half = [p for p in checkpoint_dir(run).iterdir() if not (p / STATE_FILE).exists()]
    assert half, "no checkpoint was cut off"  # the one being written
    newest = _checkpoints_are_whole(run)
    assert newest and all(p not in list_checkpoints(run) for p in half)

    _killed(resume, data_dir, tmp_path, "mid-delete", MID_DELETE, kit.backstop())
    assert _checkpoints_are_whole(run)[-1] > newest[-1]

    _killed(resume, data_dir, tmp_path, "mid-student", MID_STUDENT)
    _student_is_whole_or_absent(run)
    assert _checkpoints_are_whole(run)[-1] == STEPS and list_students(settings) == []

    _killed(resume, data_dir, tmp_path, "registered", REGISTERED)
    assert [r.name for r in list_students(settings)] == [NAME]

    code, out = kit.run(resume, kit.child_env(data_dir, None), tmp_path / "work", "last")
    assert code == 0, out
    assert f"trained {STEPS} steps" in out and f"registered student {NAME}" in out
    assert [m["step"] for m in read_metrics(run)] == list(range(1, STEPS + 1))
    [record] = list_students(settings)
    assert record.meta["metrics"]["train"]["steps"] == STEPS
    assert not [p for p in students_root(settings).iterdir() if p.name.startswith(".")]
    resumed = load_file(str(record.path / "model.safetensors"))
    straight = _straight_run(export, tmp_path / "straight")
    assert resumed.keys() == straight.keys()
    assert all(torch.allclose(resumed[n], straight[n], atol=1e-6) for n in straight)
