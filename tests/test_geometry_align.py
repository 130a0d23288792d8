"""Scale / shift fits recover known parameters; anchor alignment in the model's native space."""

from __future__ import annotations

import math

import numpy as np
import pytest

from depthweb.errors import InputError
from depthweb.geometry.align import (
    align_to_anchors,
    fit_anchors,
    fit_scale,
    fit_scale_shift,
)
from depthweb.geometry.shape import apply_rule, shape_rule

N = 20_000


def affine_data(seed: int, noise: float, scale: float = 2.5, shift: float = -0.7):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.2, 1.2, N)
    y = scale * x + shift + rng.normal(0.0, noise, N)
    return x, y


def ls_sigmas(x: np.ndarray, noise: float) -> tuple[float, float]:
    """Standard errors of the least-squares slope and intercept for Gaussian noise."""
    sxx = float(np.sum((x - x.mean()) ** 2))
    return noise / math.sqrt(sxx), noise * math.sqrt(1.0 / x.size + x.mean() ** 2 / sxx)


@pytest.mark.parametrize("noise", [0.0, 0.01, 0.2])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fit_scale_shift_recovers_parameters(seed, noise):
    x, y = affine_data(seed, noise)
    scale, shift = fit_scale_shift(x, y)
    # the estimator is unbiased with known standard errors: 6 sigma fails ~1 run in 5e8;
    # the 1e-9 floor covers float rounding of the noise-free case
    s_sigma, t_sigma = ls_sigmas(x, noise)
    assert abs(scale - 2.5) <= 6 * s_sigma + 1e-9
    assert abs(shift + 0.7) <= 6 * t_sigma + 1e-9


def test_mask_and_non_finite_values_are_ignored():
    x, y = affine_data(3, 0.0)
    x2d, y2d = x.reshape(100, 200).copy(), y.reshape(100, 200).copy()
    mask = np.ones_like(x2d, dtype=bool)
    mask[:10] = False
    y2d[:10] = 1e6  # garbage outside the mask
    x2d[50, 50] = np.nan
    scale, shift = fit_scale_shift(x2d, y2d, mask)
    assert scale == pytest.approx(2.5, rel=1e-12) and shift == pytest.approx(-0.7, rel=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
def test_trimmed_fit_ignores_outliers(seed):
    x, y = affine_data(seed, 0.01)
    rng = np.random.default_rng(seed + 100)
    bad = rng.random(N) < 0.2
    y = y.copy()
    y[bad] += rng.uniform(2.0, 8.0, bad.sum())  # e.g. sky or reflective surfaces
    plain = fit_scale_shift(x, y)
    robust = fit_scale_shift(x, y, trim=0.3)
    assert abs(plain[1] + 0.7) > 0.5  # plain least squares is dragged away
    assert robust == pytest.approx((2.5, -0.7), abs=0.01)


def test_fit_scale_only():
    rng = np.random.default_rng(4)
    x = rng.uniform(1, 3, 1000)
    assert fit_scale(x, 1.7 * x) == pytest.approx(1.7, rel=1e-12)


def test_degenerate_inputs_raise():
    with pytest.raises(ValueError, match="constant"):
        fit_scale_shift(np.ones(10), np.arange(10.0))
    with pytest.raises(ValueError, match="at least 2"):
        fit_scale_shift(np.array([1.0]), np.array([2.0]))
    with pytest.raises(ValueError, match="trim"):
        fit_scale_shift(np.arange(5.0), np.arange(5.0), trim=0.6)


def depth_scene(h: int = 40, w: int = 50) -> np.ndarray:
    v, u = np.mgrid[0:h, 0:w]
    return 1.0 + 0.05 * u + 0.02 * v  # metres, 1 to 4.2


@pytest.mark.parametrize("n_anchors", [2, 3, 5])
def test_anchors_align_relative_disparity(n_anchors):
    depth = depth_scene()
    pred = 3.0 / depth + 0.4  # affine in inverse depth, like Depth Anything
    pts = [(0, 0), (49, 39), (25, 10), (10, 30), (40, 5)][:n_anchors]
    anchors = [(u, v, float(depth[v, u])) for u, v in pts]
    fit = fit_anchors(pred, "relative_disparity", anchors)
    assert fit.ok and fit.determined == "scale and shift" and fit.space == "inverse depth"
    assert fit.scale == pytest.approx(1 / 3.0, rel=1e-9)
    assert fit.shift == pytest.approx(-0.4 / 3.0)
    assert np.allclose(fit.depth, depth, rtol=1e-5) and fit.depth.dtype == np.float32
    if n_anchors == 2:  # two points are always fitted exactly: nothing left to measure with
        assert fit.loo_residual_m is None and fit.residual_text == "not measurable with 2 anchors"
    else:
        assert fit.loo_residual_m < 1e-9 and "leave-one-out" in fit.residual_text


def test_leave_one_out_residual_measures_a_wrong_anchor():
    depth = depth_scene()
    pred = 0.3 * depth - 0.1
    good = [(0, 0, float(depth[0, 0])), (49, 39, float(depth[39, 49])),
            (25, 20, float(depth[20, 25]))]
    assert fit_anchors(pred, "relative_depth", good).loo_residual_m < 1e-9
    wrong = [*good[:2], (25, 20, float(depth[20, 25]) + 0.5)]  # 0.5 m off
    fit = fit_anchors(pred, "relative_depth", wrong)
    # in-sample RMS of a 3-point line fit is below 0.5 / sqrt(3); leave-one-out is not
    assert fit.ok and fit.loo_residual_m > 0.3
    # the same numbers from an independent leave-one-out computation
    errs = []
    for i in range(3):
        rest = [a for j, a in enumerate(wrong) if j != i]
        x = np.array([pred[v, u] for u, v, _ in rest])
        y = np.array([z for _, _, z in rest])
        s, t = np.polyfit(x, y, 1)
        u, v, z = wrong[i]
        errs.append(s * pred[v, u] + t - z)
    assert fit.loo_residual_m == pytest.approx(float(np.sqrt(np.mean(np.square(errs)))))


def test_one_anchor_metric_fits_scale_only():
    depth = depth_scene()
    fit = fit_anchors(0.5 * depth, "metric_depth", [(7, 9, float(depth[9, 7]))])
    assert fit.ok and fit.determined == "scale" and fit.shift == 0.0
    assert fit.scale == pytest.approx(2.0) and np.allclose(fit.depth, depth, rtol=1e-6)
    assert fit.residual_text == "not measurable with 1 anchor"


@pytest.mark.parametrize("kind", ["relative_disparity", "relative_depth"])
def test_one_anchor_relative_scales_the_shape_rule(kind):
    depth = depth_scene()
    # a disparity with a negative offset (zero or negative on far pixels), like the student
    pred = 3.0 / depth - 1.2 if kind == "relative_disparity" else 0.3 * depth - 0.5
    valid = np.ones(pred.shape, bool)
    rule = shape_rule(pred, kind, valid)
    shape, clamped = apply_rule(pred, rule, valid)
    u, v = 10, 12
    assert not clamped[v, u]
    fit = fit_anchors(pred, kind, [(u, v, 2.0)])
    assert fit.ok and fit.determined == "scale (shift from the shape rule)"
    assert fit.depth[v, u] == pytest.approx(2.0, rel=1e-6)
    keep = ~clamped
    assert np.isnan(fit.depth[clamped]).all() and np.isfinite(fit.depth[keep]).all()
    ratio = fit.depth[keep] / shape[keep]  # the shape, scaled: one number
    assert np.allclose(ratio, ratio[0], rtol=1e-5)
    # the reported native fit reproduces the depth
    native = fit.scale * pred + fit.shift
    expect = 1.0 / native if kind == "relative_disparity" else native
    assert np.allclose(fit.depth[keep], expect[keep], rtol=1e-5)


def test_one_anchor_on_the_far_plane_is_refused():
    depth = depth_scene()
    pred = 3.0 / depth - 1.2
    far = np.unravel_index(np.argmin(pred), pred.shape)
    fit = fit_anchors(pred, "relative_disparity", [(int(far[1]), int(far[0]), 5.0)])
    assert not fit.ok and fit.depth is None and "second anchor" in fit.refusal
    with pytest.raises(InputError, match="second anchor"):
        align_to_anchors(pred, "relative_disparity", [(int(far[1]), int(far[0]), 5.0)])


def test_fit_giving_negative_depths_is_refused():
    depth = depth_scene()
    pred = 3.0 / depth  # true inverse depth 1/depth, from 1 down to 0.24
    # two anchors consistent with a large negative shift: the far half goes beyond infinity
    anchors = [(0, 0, float(depth[0, 0]) / (1 - 0.3 * depth[0, 0])),
               (30, 0, 1.0 / (1.0 / depth[0, 30] - 0.3))]
    fit = fit_anchors(pred, "relative_disparity", anchors)
    assert not fit.ok and fit.depth is None and fit.beyond_fraction > 0.05
    assert "negative or absurd" in fit.refusal
    with pytest.raises(InputError, match="not metric"):
        align_to_anchors(pred, "relative_disparity", anchors)


def test_fit_giving_absurd_depths_is_refused():
    depth = depth_scene()
    pred = 3.0 / depth
    # the second anchor says a mid-distance pixel is 10 km away: the fit is absurd
    fit = fit_anchors(pred, "relative_disparity", [(0, 0, float(depth[0, 0])), (40, 0, 1e4)])
    assert not fit.ok
    assert "absurd" in fit.refusal


@pytest.mark.parametrize(
    ("anchors", "message"),
    [
        ([], "at least one"),
        ([(100, 0, 2.0)], "outside"),
        ([(3, 3, -1.0)], "positive depth"),
        ([(1, 1, 2.0)], "no prediction"),
        ([(0, 0, 1.0), (49, 39, 4.0)], "contradict"),
        ([(0, 0, 1.0), (0, 0, 4.0)], "equal predicted"),
    ],
)
def test_bad_anchors_raise_input_error(anchors, message):
    depth = depth_scene()
    pred = depth.copy()  # relative_disparity but ordered like depth: contradicts true depths
    pred[1, 1] = np.nan
    with pytest.raises(InputError, match=message):
        align_to_anchors(pred, "relative_disparity", anchors)
