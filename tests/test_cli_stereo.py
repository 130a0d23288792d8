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


def test_cli_stereo_with_a_rig_yaml_rectifies_and_is_metric(tmp_path):
    """``--calib rig.yaml`` (OpenCV K1 D1 K2 D2 R T) on the synthetic rig of test_rectify."""
    from tests.test_rectify import render_rig, write_yaml

    left, right, values = render_rig()
    write_yaml(tmp_path / "rig.yaml", **values)
    for name, frame in (("l.png", left), ("r.png", right)):
        cv2.imwrite(str(tmp_path / name), cv2.cvtColor(frame.rgb, cv2.COLOR_RGB2BGR))
    proc = run_cli("stereo", tmp_path / "l.png", tmp_path / "r.png", "--calib",
                   tmp_path / "rig.yaml", "-o", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    meta = json.loads((tmp_path / "out" / "l.json").read_text())
    assert meta["kind"] == "metric_depth" and meta["rectification"]["method"] == "calibrated"
    assert (tmp_path / "out" / "l_rectified_pair.png").exists()
    depth = np.load(tmp_path / "out" / "l.npy")
    ok = np.isfinite(depth) & np.isfinite(left.depth)
    assert ok.mean() > 0.7
    assert np.mean(np.abs(depth[ok] - left.depth[ok]) / left.depth[ok]) < 0.06


def test_cli_stereo_rectify_from_features(tmp_path):
    from depthweb.ui.stereo_tab import EXAMPLE_DIR

    img = cv2.imread(str(EXAMPLE_DIR / "im1.png"))
    h, w = img.shape[:2]
    turned = cv2.warpAffine(img, cv2.getRotationMatrix2D((w / 2, h / 2), 2.0, 1.0), (w, h))
    cv2.imwrite(str(tmp_path / "r.png"), turned)
    proc = run_cli("stereo", EXAMPLE_DIR / "im0.png", tmp_path / "r.png", "--rectify",
                   "--focal-px", 248, "--baseline-m", 0.12, "-o", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    meta = json.loads((tmp_path / "out" / "im0.json").read_text())
    assert meta["kind"] == "metric_depth" and meta["rectification"]["method"] == "essential"
    assert meta["rectification"]["epipolar_error_after_px"] < 0.5
    assert "rectified (essential)" in proc.stdout
    # Unrectifiable: the same photo twice; and contradictory options: one line each.
    for args in ([EXAMPLE_DIR / "im0.png", EXAMPLE_DIR / "im0.png", "--rectify"],
                 [EXAMPLE_DIR / "im0.png", tmp_path / "r.png", "--rectify", "--calib",
                  EXAMPLE_DIR / "calib.txt"],
                 [EXAMPLE_DIR / "im0.png", tmp_path / "r.png"]):
        proc = run_cli("stereo", *args, "-o", tmp_path / "bad")
        assert proc.returncode != 0 and "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not (tmp_path / "bad").exists()
