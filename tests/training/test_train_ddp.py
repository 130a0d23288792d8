"""The same loop under torchrun with two CPU processes (gloo): rank 0 writes, ranks agree."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# Each rank writes its result to its own file: two ranks printing to one unbuffered pipe
# interleave their writes ("RESULTRESULT 3 False ...").
DRIVER = """
import json, os, sys
from pathlib import Path
from depthweb.training.config import config_from_dict
from depthweb.training.loop import train
cfg = config_from_dict(json.loads(sys.argv[1]))
result = train(cfg, sys.argv[2], progress=False)
out = Path(sys.argv[3]) / f"result_{os.environ['RANK']}.json"
out.write_text(json.dumps([result.steps, result.student_dir is not None]))
"""


@pytest.mark.slow
def test_two_process_ddp_run(tmp_path):
    cfg = {"model": {"widths": [8, 12, 16]}, "image_size": [32, 48], "batch_size": 2,
           "steps": 3, "threads": 1, "checkpoint_every": 2, "device": "cpu",
           "data": [{"type": "synthetic", "count": 8, "seed": 0}]}
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(driver), json.dumps(cfg), str(tmp_path / "run"), str(tmp_path)],
        capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = {rank: json.loads((tmp_path / f"result_{rank}.json").read_text()) for rank in (0, 1)}
    assert results == {0: [3, True], 1: [3, False]}  # both ran 3 steps; only rank 0 saved
    log_text = (tmp_path / "run" / "metrics.jsonl").read_text()
    metrics = [json.loads(ln) for ln in log_text.splitlines()]
    assert [m["step"] for m in metrics] == [1, 2, 3]  # one writer
    assert (tmp_path / "run" / "checkpoints" / "step_0000002" / "trainer_state.pt").is_file()
    assert (tmp_path / "run" / "student" / "model.safetensors").is_file()
