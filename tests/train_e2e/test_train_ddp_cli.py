"""``depthweb train`` under torchrun (two CPU processes, gloo): one student is registered, by
rank 0, and the other rank exits cleanly without a second registration."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.train_e2e.conftest import TINY, tiny_export

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_torchrun_train_registers_once(tmp_path):
    export = tiny_export(tmp_path / "export", n=8)
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps({**TINY, "batch_size": 2, "steps": 3, "threads": 1}))
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1",
           "DEPTHWEB_DATA_DIR": str(tmp_path / "data"), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "depthweb", "train", "--data", str(export), "--config", str(config),
         "-o", str(tmp_path / "run"), "--name", "ddp-student"],
        capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("registered student ddp-student") == 1, proc.stdout
    students = sorted(p.name for p in (tmp_path / "data" / "students").iterdir())
    assert students == ["ddp-student"]
    meta = json.loads((tmp_path / "data" / "students" / "ddp-student" / "meta.json").read_text())
    assert meta["metrics"]["train"]["steps"] == 3
