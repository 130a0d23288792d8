"""Must show: tiny random-weight DA-V2 and Depth Pro through `depthweb predict --weights`
(on the photos shipped in assets/examples, so these run on a plain clone)."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.builders import build_tiny_depth_anything, build_tiny_depth_pro

EXAMPLES = Path(__file__).resolve().parents[1] / "assets" / "examples"  # shipped, with credits
# a KITTI-like outdoor frame (638x235) and a 3:2 photo: two sizes, both shippable
PHOTOS = [EXAMPLES / "monodepth2_test_image.jpg",
          EXAMPLES / "david-kohler-VFRTXGw1VjU-unsplash.jpg"]


def run_cli(*args, **env):
    full_env = {**os.environ, **{k: str(v) for k, v in env.items()}}
    return subprocess.run([sys.executable, "-m", "depthweb", *map(str, args)],
                          capture_output=True, text=True, timeout=300, env=full_env)


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    return {
        "depth-anything-v2-small": build_tiny_depth_anything(root / "da2"),
        "depth-pro": build_tiny_depth_pro(root / "dp"),
    }


@pytest.mark.parametrize(("model", "kind"), [("depth-anything-v2-small", "relative_disparity"),
                                              ("depth-pro", "metric_depth")])
def test_predict_photos_at_input_size(model, kind, tiny_models, tmp_path):
    frames = PHOTOS
    proc = run_cli("predict", frames[0], frames[1], "-m", model, "--weights", tiny_models[model],
                   "-o", tmp_path)
    assert proc.returncode == 0, proc.stderr
    for frame in frames[:2]:
        depth = np.load(tmp_path / f"{frame.stem}.npy")
        meta = json.loads((tmp_path / f"{frame.stem}.json").read_text())
        height, width = cv2.imread(str(frame)).shape[:2]
        assert depth.shape == (height, width) and depth.dtype == np.float32
        assert (meta["height"], meta["width"]) == (height, width)
        assert meta["kind"] == kind and meta["model"] == model
        assert meta["weights"] == str(tiny_models[model])
        assert set(meta["intrinsics"]) >= {"fx", "fy", "cx", "cy", "source"}
        assert (tmp_path / f"{frame.stem}.png").exists()
        assert (tmp_path / f"{frame.stem}_color.png").exists()


def test_predict_with_known_focal_is_reported(tiny_models, tmp_path):
    frame = PHOTOS[0]
    proc = run_cli("predict", frame, "-m", "depth-pro", "--weights", tiny_models["depth-pro"],
                   "--focal-px", 707.0493, "-o", tmp_path)
    assert proc.returncode == 0, proc.stderr
    intr = json.loads((tmp_path / f"{frame.stem}.json").read_text())["intrinsics"]
    assert intr["source"] == "user" and intr["fx"] == pytest.approx(707.0493)


def test_bad_file_reported_others_complete(tiny_models, tmp_path):
    good = PHOTOS[0]
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image at all")
    out = tmp_path / "out"
    proc = run_cli("predict", bad, good, "-m", "depth-anything-v2-small",
                   "--weights", tiny_models["depth-anything-v2-small"], "-o", out)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "broken.jpg" in proc.stderr
    assert (out / f"{good.stem}.npy").exists()
    assert not list(out.glob("broken*")) and not list(out.glob(".*"))


def test_offline_uncached_model_fails_fast(tmp_path):
    t0 = time.perf_counter()
    img = tmp_path / "x.png"
    import cv2

    cv2.imwrite(str(img), np.zeros((8, 8, 3), np.uint8))
    proc = run_cli("predict", img, "-m", "depth-anything-v2-base", "-o", tmp_path / "o",
                   HF_HUB_OFFLINE=1, HF_HUB_CACHE=tmp_path / "empty-cache")
    elapsed = time.perf_counter() - t0
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    err = proc.stderr.strip()
    assert len(err.splitlines()) == 1
    assert "depth-anything-v2-base" in err and "depthweb download depth-anything-v2-base" in err
    assert elapsed < 30
    assert not (tmp_path / "o").exists()


def test_unknown_model_suggests(tmp_path):
    proc = run_cli("predict", tmp_path / "x.png", "-m", "depth-anything-v2-smal", "-o", tmp_path)
    assert proc.returncode != 0 and "Did you mean depth-anything-v2-small" in proc.stderr


def test_models_json_lists_every_family():
    proc = run_cli("models", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    families = {r["family"] for r in rows}
    assert {"depth_anything", "depth_pro", "metric3d", "unidepth"} <= families
    for r in rows:
        assert r["kind"] in {"metric_depth", "relative_depth", "relative_disparity"}
        assert r["licence"]
        # an empty HF cache: only the student bundled in assets/ is on this machine
        assert r["cached"] is (r["name"] == "depthweb-student")
