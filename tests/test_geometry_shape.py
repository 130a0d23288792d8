"""The stated shift rule for 3D views: complete surfaces, bounded spread, a far plane."""

from __future__ import annotations

import numpy as np
import pytest

from depthweb.geometry.shape import (
    FAR_NEAR_RATIO,
    METRIC_FAR_NEAR_RATIO,
    shape_depth,
    shape_rule,
    shift_for_ratio,
)


def scene(h: int = 60, w: int = 80, seed: int = 0) -> np.ndarray:
    """True depth (m): a floor receding from 1 m to 6 m and a sky band (inf) on top."""
    rng = np.random.default_rng(seed)
    rows = np.linspace(6.0, 1.0, h)[:, None] * np.ones((1, w))
    depth = rows * (1 + 0.02 * rng.standard_normal((h, w)))
    depth[: h // 4] = np.inf
    return depth


def spread(depth: np.ndarray) -> float:
    v = depth[np.isfinite(depth)]
    lo, hi = np.percentile(v, [2, 98])
    return float(hi / lo)


@pytest.mark.parametrize("offset", [-0.8, -0.2, 0.0, 0.3])
@pytest.mark.parametrize("seed", [0, 1])
def test_disparity_with_any_offset_gives_a_complete_bounded_surface(offset, seed):
    true = scene(seed=seed)
    rng = np.random.default_rng(seed + 10)
    pred = 2.0 / true + offset + 0.01 * rng.standard_normal(true.shape)  # sky: offset + noise
    valid = np.ones(pred.shape, bool)
    depth, rule = shape_depth(pred, "relative_disparity", valid)
    assert np.isfinite(depth).all()  # every valid pixel drawn, none dropped
    assert spread(depth) <= FAR_NEAR_RATIO * 1.0001
    assert rule.far_fraction >= 0.2  # the sky (a quarter of the image) sits on the far plane
    sky = depth[: true.shape[0] // 4]
    assert np.allclose(sky, depth.max())  # a flat backdrop, not streaks
    # order is kept: nearer rows stay nearer
    col = np.nanmedian(depth, axis=1)
    assert np.all(np.diff(col[true.shape[0] // 4 :]) <= 1e-3)


def test_shift_is_zero_when_the_model_zero_already_fits_the_ratio():
    pred = np.linspace(1.0, 5.0, 1000).reshape(20, 50)  # ratio 5 < 10: trust the model's zero
    rule = shape_rule(pred, "relative_disparity", np.ones(pred.shape, bool))
    assert rule.shift == 0.0 and rule.far_fraction == pytest.approx(0.0, abs=0.1)


@pytest.mark.parametrize(("lo", "hi"), [(-0.8, 7.0), (0.0, 1.0), (-3.0, -1.0), (0.01, 2.0)])
def test_shift_formula(lo, hi):
    t = shift_for_ratio(lo, hi)
    assert lo + t > 0 and (hi + t) / (lo + t) == pytest.approx(FAR_NEAR_RATIO)


def test_relative_depth_with_negative_values():
    true = scene()
    true[np.isinf(true)] = 50.0
    pred = 0.5 * true - 1.0  # affine depth, negative nearby
    depth, rule = shape_depth(pred, "relative_depth", np.ones(pred.shape, bool))
    assert np.isfinite(depth).all() and (depth > 0).all()
    assert spread(depth) <= FAR_NEAR_RATIO * 1.0001 and rule.shift > 0


def test_metric_keeps_metres_and_clips_far_to_a_plane():
    true = scene()
    true[np.isinf(true)] = 500.0  # a metric model's far sky
    depth, rule = shape_depth(true, "metric_depth", np.isfinite(true))
    ok = true < 100
    assert np.allclose(depth[ok], true[ok], rtol=1e-6)  # metres untouched
    assert spread(depth) <= METRIC_FAR_NEAR_RATIO * 1.0001
    assert np.isfinite(depth).all() and rule.far_fraction >= 0.2 and rule.shift == 0.0


def test_invalid_pixels_stay_invalid_and_empty_maps_give_none():
    pred = np.linspace(-1, 3, 200).reshape(10, 20)
    valid = np.ones(pred.shape, bool)
    valid[:, :5] = False
    depth, _ = shape_depth(pred, "relative_disparity", valid)
    assert np.isnan(depth[:, :5]).all() and np.isfinite(depth[:, 5:]).all()
    empty, rule = shape_depth(pred, "relative_disparity", np.zeros(pred.shape, bool))
    assert rule is None and np.isnan(empty).all()
