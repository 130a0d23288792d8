"""The video use case with real models: the bundled student and a tiny metric DA-V2, the CLI,
all-or-nothing outputs, one colour scale per clip."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from depthweb.config import Settings
from depthweb.errors import InputError
from depthweb.services.video import process_video, side_by_side
from depthweb.services.video_io import decode_video
from depthweb.types import DepthKind
from tests.video.clips import phone_clip

STUDENT = "depthweb-student"


@pytest.fixture(scope="module")
def phone(tmp_path_factory):
    return phone_clip(tmp_path_factory.mktemp("clips") / "IMG_0001.mov", frames=10)


def test_phone_clip_gives_every_output(phone, tmp_path):
    result = process_video(phone, STUDENT, tmp_path, cloud_frame=2, settings=Settings())
    names = sorted(f.name for f in tmp_path.iterdir())
    assert names == ["IMG_0001_depth.json", "IMG_0001_depth.npz", "IMG_0001_depth.webm",
                     "IMG_0001_frame2.ply"]
    meta = json.loads((tmp_path / "IMG_0001_depth.json").read_text())
    npz = np.load(tmp_path / "IMG_0001_depth.npz")
    t = meta["frame_count"]
    assert npz["depth"].dtype == np.float16 and npz["depth"].shape == (t, 320, 192)  # rotated
    assert meta["kind"] == "relative_disparity" and meta["model"] == STUDENT
    assert meta["fps"] == pytest.approx(result.fps) and len(npz["times"]) == t
    assert (meta["height"], meta["width"]) == (320, 192)
    assert meta["source"]["codec"] == "hevc" and meta["source"]["rotation"] == -90
    assert len(meta["stabilisation"]["frames"]) == t
    np.testing.assert_allclose(npz["depth"].astype(np.float32), result.depth, rtol=1e-3, atol=1e-4,
                               equal_nan=True)
    video = decode_video(tmp_path / "IMG_0001_depth.webm", settings=Settings())
    assert len(video) == t and video.frames.shape[1:3] == (320, 384)  # photo | depth
    assert (tmp_path / "IMG_0001_frame2.ply").read_bytes().startswith(b"ply")


def test_one_colour_scale_for_the_whole_clip():
    rgb = np.zeros((2, 8, 8, 3), np.uint8)
    depth = np.stack([np.full((8, 8), 1.0), np.full((8, 8), 2.0)]).astype(np.float32)
    depth[:, 0, 0] = [0.5, 0.5]
    frames, (lo, hi) = side_by_side(rgb, depth, DepthKind.RELATIVE_DISPARITY)
    assert frames.shape == (2, 8, 16, 3)
    assert lo < 1.0 < hi  # both frames' values inside one range
    assert not np.array_equal(frames[0, 4, 12], frames[1, 4, 12])  # different depth, colour
    np.testing.assert_array_equal(frames[0, 0, 8], frames[1, 0, 8])  # same depth, same colour


def test_metric_model_keeps_metres(tmp_path):
    from tests.builders import build_tiny_depth_anything

    weights = build_tiny_depth_anything(tmp_path / "m", metric=True, max_depth=20)
    clip = phone_clip(tmp_path / "c.mov", frames=6, rotation=0, vfr=False)
    out = tmp_path / "out"
    result = process_video(clip, "depth-anything-v2-metric-indoor-small", out, weights=weights,
                           max_side=128, settings=Settings())
    meta = json.loads((out / "c_depth.json").read_text())
    assert meta["kind"] == "metric_depth" and meta["unit"] == "m"
    scales = [f["scale"] for f in meta["stabilisation"]["frames"]]
    assert all(1 / 1.1 - 1e-6 <= s <= 1.1 + 1e-6 for s in scales)
    assert result.depth.shape[1:] == (76, 128)  # 320x192 to 128 px, even sides


def test_bad_input_writes_nothing(tmp_path):
    bad = tmp_path / "clip.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 100)
    out = tmp_path / "out"
    with pytest.raises(InputError):
        process_video(bad, STUDENT, out, settings=Settings())
    assert not out.exists() or not any(out.iterdir())


def test_a_failure_after_decoding_writes_nothing(phone, tmp_path):
    def broken(frames, model, **kwargs):
        raise InputError("The model refused the frames.")

    with pytest.raises(InputError, match="refused"):
        process_video(phone, STUDENT, tmp_path, predict_fn=broken, settings=Settings())
    assert not any(tmp_path.iterdir())
    with pytest.raises(InputError, match="between 0 and"):
        process_video(phone, STUDENT, tmp_path, cloud_frame=99, settings=Settings())
    assert not any(tmp_path.iterdir())


def run_cli(*args, **env):
    full = {**os.environ, "HF_HUB_OFFLINE": "1", **{k: str(v) for k, v in env.items()}}
    return subprocess.run([sys.executable, "-m", "depthweb", *map(str, args)],
                          capture_output=True, text=True, timeout=300, env=full)


def test_cli_video_and_its_refusals(phone, tmp_path):
    proc = run_cli("video", phone, "-m", STUDENT, "-o", tmp_path / "out", "--stride", "2",
                   "--max-side", "160", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert "frames at" in proc.stdout and "IMG_0001_depth.webm" in proc.stdout
    meta = json.loads((tmp_path / "out" / "IMG_0001_depth.json").read_text())
    assert meta["source"]["stride"] == 2 and max(meta["height"], meta["width"]) <= 160
    text = tmp_path / "notes.mov"
    text.write_text("hello")
    proc = run_cli("video", text, "-m", STUDENT, "-o", tmp_path / "bad", "--no-progress")
    assert proc.returncode == 2 and proc.stderr.strip().startswith("error: notes.mov is not")
    assert not (tmp_path / "bad").exists()
    proc = run_cli("video", phone, "-m", STUDENT, "-o", tmp_path / "cap", "--no-progress",
                   DEPTHWEB_VIDEO_MAX_FRAMES=3)
    assert proc.returncode == 2 and "more than the limit of 3" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
