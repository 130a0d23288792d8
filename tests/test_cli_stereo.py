"""Must show: stereo through the CLI on Middlebury, AbsRel <= 0.03 with >= 80 % valid."""

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from depthweb.models.stereo import StereoCalib
from depthweb.pfm import read_pfm


def run_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "depthweb", *map(str, args)],
                          capture_output=True, text=True, timeout=300, env=env)


@pytest.mark.parametrize("scene", ["Adirondack", "Motorcycle"])
def test_cli_stereo_middlebury_accuracy(scene, shared_data, tmp_path):
    d = shared_data / "middlebury" / scene
    proc = run_cli("stereo", d / "im0.png", d / "im1.png", "--calib", d / "calib.txt",
                   "-o", tmp_path)
    assert proc.returncode == 0, proc.stderr
    depth = np.load(tmp_path / "im0.npy")
    meta = json.loads((tmp_path / "im0.json").read_text())
    assert meta["kind"] == "metric_depth" and meta["intrinsics"]["source"] == "calib"
    assert (tmp_path / "im0_disparity.npy").exists()

    calib = StereoCalib.from_middlebury(d / "calib.txt")
    gt_disp = read_pfm(d / "disp0GT.pfm")
    gt = calib.focal_px * calib.baseline_m / (gt_disp + calib.doffs_px)
    nocc = cv2.imread(str(d / "mask0nocc.png"), cv2.IMREAD_GRAYSCALE) == 255
    eval_mask = nocc & np.isfinite(gt) & (gt > 0)
    ok = eval_mask & np.isfinite(depth)
    valid = ok.sum() / eval_mask.sum()
    abs_rel = float(np.mean(np.abs(depth[ok] - gt[ok]) / gt[ok]))
    assert valid >= 0.80, f"{scene}: only {valid:.1%} valid"
    assert abs_rel <= 0.03, f"{scene}: AbsRel {abs_rel:.4f}"


def test_cli_stereo_bad_calib_and_sizes(shared_data, tmp_path):
    d = shared_data / "middlebury" / "Adirondack"
    bad = tmp_path / "calib.txt"
    bad.write_text("cam0=[oops]\nbaseline=abc\n")
    proc = run_cli("stereo", d / "im0.png", d / "im1.png", "--calib", bad, "-o", tmp_path / "o")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "calib.txt" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    m = shared_data / "middlebury" / "Motorcycle" / "im1.png"
    proc = run_cli("stereo", d / "im0.png", m, "--focal-px", 1000, "--baseline-m", 0.2,
                   "-o", tmp_path / "o")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "im0.png" in proc.stderr and "im1.png" in proc.stderr
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())
