"""Evaluation folders (NYU / KITTI layout), the protocol and the trivial baselines."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from depthweb.training.evaldata import load_eval_folder
from depthweb.training.evaluate import (
    BASELINES,
    baseline_prediction,
    beats,
    evaluate_baselines,
    evaluate_folder,
    evaluate_prediction,
)
from depthweb.training.raycast import Camera, Material, Plane, rotation
from depthweb.training.scenes import Light, Scene
from depthweb.training.synthetic import render
from depthweb.types import DepthKind


def _ground_plane_folder(root, h=60, w=80, f=70.0, cam_h=1.6):
    """A KITTI-style folder of one frame: a flat ground seen by a level camera."""
    mat = Material("noise", np.full(3, 0.3), np.full(3, 0.6))
    cam = Camera(f, f, w / 2, h / 2, rotation(0, 0, 0), np.array([0.0, cam_h, 0.0]))
    scene = Scene(cam, [Plane(np.array([0.0, 1.0, 0.0]), 0.0, mat)],
                  Light(1.0, 0.3, direction=np.array([0.0, 1.0, 0.0])), True)
    frame = render(scene, h, w, np.random.default_rng(0))
    raw = np.where(np.isfinite(frame.depth) & (frame.depth < 80), frame.depth * 256, 0)
    (root / "rgb").mkdir(parents=True)
    (root / "depth").mkdir()
    Image.fromarray(frame.rgb).save(root / "rgb" / "0001.png")
    Image.fromarray(np.round(raw).astype(np.uint16)).save(root / "depth" / "0001.png")
    ann = {"files": [{"cam_in": [f, f, w / 2, h / 2], "rgb": "data/kitti_demo/rgb/0001.png",
                      "depth": "data/kitti_demo/depth/0001.png", "depth_scale": 256.0}]}
    (root / "test_annotations.json").write_text(json.dumps(ann))
    return root, frame


def test_reader_scales_depth_and_masks_zeros(tmp_path):
    root, frame = _ground_plane_folder(tmp_path / "kitti")
    (sample,) = load_eval_folder(root)
    assert sample.dataset == "kitti" and sample.max_depth == 80.0
    ok = np.isfinite(frame.depth) & (frame.depth < 80)
    assert np.array_equal(sample.valid, ok & (np.round(frame.depth * 256) > 0))
    assert np.allclose(sample.depth[sample.valid], frame.depth[sample.valid], atol=1 / 512)
    assert sample.intrinsics.fx == 70.0


def test_disparity_ramp_is_exact_on_a_ground_plane(tmp_path):
    root, _ = _ground_plane_folder(tmp_path / "kitti")
    samples = load_eval_folder(root)
    res = evaluate_baselines(samples)
    assert res["disparity_ramp"]["mean"]["abs_rel"] < 0.01  # ground disparity is linear in rows
    assert res["constant"]["mean"]["abs_rel"] > 0.2
    # a prediction that equals the ground truth (as metric depth) is perfect
    perfect = evaluate_folder(samples, lambda s: (s.depth, DepthKind.METRIC_DEPTH))
    assert perfect["mean"]["abs_rel"] < 1e-6 and perfect["mean"]["delta1"] == 1.0
    assert beats(perfect, {k: v for k, v in res.items() if k != "disparity_ramp"})


def test_constant_prediction_is_fitted_by_its_shift(tmp_path):
    root, _ = _ground_plane_folder(tmp_path / "kitti")
    (sample,) = load_eval_folder(root)
    got = evaluate_prediction(np.full(sample.depth.shape, 7.0), "relative_disparity", sample)
    gt = sample.depth[sample.valid].astype(np.float64)
    const = 1.0 / np.mean(1.0 / gt)
    assert got["abs_rel"] == pytest.approx(np.mean(np.abs(const - gt) / gt), rel=1e-5)


def test_baselines_shapes_and_directions():
    for name in BASELINES:
        pred, kind = baseline_prediction(name, 10, 4)
        assert pred.shape == (10, 4)
    depth, kind = baseline_prediction("depth_ramp", 10, 4)
    assert kind is DepthKind.RELATIVE_DEPTH and depth[0, 0] > depth[-1, 0]  # top far
    disp, kind = baseline_prediction("disparity_ramp", 10, 4)
    assert kind is DepthKind.RELATIVE_DISPARITY and disp[0, 0] < disp[-1, 0]  # bottom near


@pytest.mark.parametrize("name, shape, max_d", [("nyu", (480, 640), 10.0),
                                                ("kitti", (375, 1242), 80.0)])
def test_shared_data_folders(shared_data, name, shape, max_d):
    samples = load_eval_folder(shared_data / name)
    assert len(samples) == 3
    for s in samples:
        assert s.rgb.shape == (*shape, 3) and s.depth.shape == shape
        assert s.depth[s.valid].max() <= max_d and s.depth[s.valid].min() > 0
    if name == "nyu":
        s = samples[0]
        assert not s.valid[:45].any() and not s.valid[:, 601:].any()  # Eigen crop
        assert s.intrinsics.fx == pytest.approx(518.8579)
    else:
        assert 0.1 < np.mean([s.valid.mean() for s in samples]) < 0.3  # sparse LiDAR
