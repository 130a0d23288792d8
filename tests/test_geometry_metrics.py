"""Depth metrics on hand-computed cases; alignment before evaluation; standard crops."""

from __future__ import annotations

import math

import numpy as np
import pytest

from depthweb.geometry.metrics import (
    align_and_evaluate,
    align_prediction,
    depth_metrics,
    eigen_crop_mask,
    garg_crop_mask,
)


def test_hand_computed_metrics():
    pred = np.array([1.0, 1.5, 3.0])
    gt = np.array([1.0, 1.0, 2.0])
    m = depth_metrics(pred, gt)
    # abs: 0, .5, 1 -> rel 0, .5, .5 ; squared: 0, .25, 1 -> /g 0, .25, .5
    assert m["abs_rel"] == pytest.approx(1.0 / 3.0)
    assert m["sq_rel"] == pytest.approx(0.25)
    assert m["rmse"] == pytest.approx(math.sqrt(1.25 / 3.0))
    ln15 = math.log(1.5)
    assert m["rmse_log"] == pytest.approx(math.sqrt(2 * ln15**2 / 3.0))
    assert m["log10"] == pytest.approx(2 * math.log10(1.5) / 3.0)
    # ratios 1, 1.5, 1.5: only the first is < 1.25; all are < 1.5625
    assert (m["delta1"], m["delta2"], m["delta3"]) == pytest.approx((1 / 3, 1.0, 1.0))
    assert m["n"] == 3


def test_mask_and_invalid_gt_are_excluded():
    pred = np.array([[2.0, 9.0], [4.0, 5.0]])
    gt = np.array([[2.0, 1.0], [0.0, np.nan]])
    mask = np.array([[True, False], [True, True]])
    m = depth_metrics(pred, gt, mask)
    assert m["n"] == 1 and m["abs_rel"] == 0.0 and m["delta1"] == 1.0
    empty = depth_metrics(pred, gt, np.zeros((2, 2), dtype=bool))
    assert empty["n"] == 0 and math.isnan(empty["abs_rel"])


def test_symmetric_delta_and_min_depth_clamp():
    m = depth_metrics(np.array([0.5, -1.0]), np.array([1.0, 1.0]), min_depth=0.1)
    # ratio 2 (under-estimate counts like over-estimate) and 10 after clamping -1 to 0.1
    assert m["delta3"] == 0.0 and m["abs_rel"] == pytest.approx((0.5 + 0.9) / 2)


def gt_scene(h: int = 48, w: int = 64) -> np.ndarray:
    v, u = np.mgrid[0:h, 0:w]
    return 0.8 + 0.08 * u + 0.03 * v  # 0.8 .. 7.2 m


def test_relative_disparity_aligned_in_disparity_space():
    gt = gt_scene()
    mask = np.ones_like(gt, dtype=bool)
    pred = 5.0 / gt + 0.3
    result = align_and_evaluate(pred, "relative_disparity", gt, mask, max_depth=10.0)
    assert result["abs_rel"] < 1e-6 and result["delta1"] == 1.0
    assert result["scale"] == pytest.approx(0.2) and result["shift"] == pytest.approx(-0.06)
    # aligning the same prediction in depth space would not be exact
    depth_space = align_and_evaluate(pred, "relative_depth", gt, mask, max_depth=10.0)
    assert depth_space["abs_rel"] > 0.05


def test_relative_depth_and_metric():
    gt = gt_scene()
    mask = np.ones_like(gt, dtype=bool)
    rel = align_and_evaluate(2.0 * gt - 0.5, "relative_depth", gt, mask, max_depth=10.0)
    assert rel["abs_rel"] < 1e-6
    metric = align_and_evaluate(1.1 * gt, "metric_depth", gt, mask, max_depth=10.0)
    assert metric["abs_rel"] == pytest.approx(0.1) and metric["scale"] == 1.0


def test_capping_at_max_depth():
    gt = gt_scene()
    mask = np.ones_like(gt, dtype=bool)
    pred = gt.copy()
    pred[0, 0] = 1000.0
    depth, _, _ = align_prediction(pred, "metric_depth", gt, mask, max_depth=10.0)
    assert depth[0, 0] == 10.0 and depth.dtype == np.float32
    # an aligned disparity <= 0 means "beyond the range": it becomes max_depth, not NaN
    disp = 1.0 / gt
    disp[5, 5] = -3.0
    mask[5, 5] = False
    depth, _, _ = align_prediction(disp, "relative_disparity", gt, mask, max_depth=10.0)
    assert depth[5, 5] == 10.0 and np.allclose(depth[mask], gt[mask], rtol=1e-5)


def test_gt_outside_range_is_not_evaluated():
    gt = gt_scene()
    gt[:, :10] = 50.0  # beyond max_depth: left out of both the fit and the metrics
    mask = np.ones_like(gt, dtype=bool)
    result = align_and_evaluate(2.0 / gt + 1.0, "relative_disparity", gt, mask, max_depth=10.0)
    assert result["n"] == gt[:, 10:].size and result["abs_rel"] < 1e-6


def test_crops():
    eigen = eigen_crop_mask(480, 640)
    expected = np.zeros((480, 640), dtype=bool)
    expected[45:471, 41:601] = True
    assert np.array_equal(eigen, expected)
    garg = garg_crop_mask(375, 1242)
    rows, cols = np.flatnonzero(garg.any(axis=1)), np.flatnonzero(garg.any(axis=0))
    assert (rows[0], rows[-1] + 1, cols[0], cols[-1] + 1) == (153, 371, 44, 1197)
    half = eigen_crop_mask(240, 320)
    assert half.sum() == pytest.approx(eigen.sum() / 4, rel=0.02)
