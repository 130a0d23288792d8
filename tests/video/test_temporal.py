"""Temporal stabilisation maths (pure numpy): global jumps removed, local changes kept,
metric scale bounded, resets on cuts, and the flicker measures."""

from __future__ import annotations

import numpy as np
import pytest

from depthweb.geometry.temporal import (
    StabiliseConfig,
    TemporalStabiliser,
    fit_scale_l1,
    fit_scale_shift_l1,
    flicker_parts,
    local_flicker,
    scene_cuts,
    smooth_sequence,
    stabilise_sequence,
    stable_pixels,
    temporal_flicker,
)


def jittered_sequence(frames: int = 12, seed: int = 0, jitter: float = 0.15, noise: float = 0.0):
    """True disparity of a static scene (T, H, W) and per-frame affine-jittered predictions."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:48, 0:64]
    base = 0.2 + 0.8 * (yy / 47.0) + 0.1 * np.sin(xx / 5.0)
    truth = np.repeat(base[None], frames, 0)
    scales = rng.uniform(1 - jitter, 1 + jitter, frames)
    shifts = rng.uniform(-jitter, jitter, frames) * 0.5
    preds = truth * scales[:, None, None] + shifts[:, None, None]
    preds += rng.normal(0, noise, preds.shape)
    return truth, preds


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_global_jumps_of_relative_outputs_are_removed(seed):
    truth, preds = jittered_sequence(seed=seed)
    stable = np.ones((len(truth) - 1, *truth.shape[1:]), bool)
    out, fits = stabilise_sequence(preds, np.ones_like(preds, bool), "relative_disparity",
                                   StabiliseConfig(param_ema=1.0, denoise=False, window_sigma=0))
    before, after = temporal_flicker(preds, stable), temporal_flicker(out, stable)
    assert before > 0.05
    assert after < 0.01 * before + 1e-6
    assert fits[0].reset and not any(f.reset for f in fits[1:])


@pytest.mark.parametrize("ema", [1.0, 0.7, 0.4])
def test_applied_parameters_are_an_ema_of_the_fitted_ones(ema):
    """A persistent doubling of the model's output at frame 4: the fit there is scale 0.5,
    and the applied scale moves ``ema`` of the way from the previous one (1.0)."""
    truth, _ = jittered_sequence(frames=8, jitter=0.0)
    preds = truth.copy()
    preds[4:] *= 2.0
    cfg = StabiliseConfig(param_ema=ema, reference_ema=1.0, denoise=False, window_sigma=0)
    out, fits = stabilise_sequence(preds, np.ones_like(preds, bool), "relative_disparity", cfg)
    assert fits[4].scale == pytest.approx(ema * 0.5 + (1 - ema) * 1.0, rel=1e-6)
    assert fits[4].shift == pytest.approx(0.0, abs=1e-9)
    np.testing.assert_allclose(out[4], preds[4] * fits[4].scale, rtol=1e-5)


def test_local_changes_are_kept_where_pixels_disagree():
    """A region that really changes (an object moving closer) is not pulled to the old value."""
    _truth, preds = jittered_sequence(frames=6, jitter=0.0)
    preds = preds.copy()
    preds[3:, 10:20, 10:20] *= 2.0
    out, fits = stabilise_sequence(preds, np.ones_like(preds, bool), "relative_disparity")
    np.testing.assert_allclose(out[4, 10:20, 10:20], preds[4, 10:20, 10:20], rtol=0.02)
    assert not any(f.reset for f in fits[1:])


def test_metric_models_keep_metres_within_the_bound():
    rng = np.random.default_rng(3)
    depth = np.full((8, 32, 32), 4.0) * rng.uniform(0.5, 1.5, (8, 1, 1))  # 50 % scale jumps
    out, fits = stabilise_sequence(depth, np.ones_like(depth, bool), "metric_depth",
                                   StabiliseConfig(metric_bound=0.1))
    ratio = out / depth
    assert ratio.min() >= 1 / 1.1 - 1e-6 and ratio.max() <= 1.1 + 1e-6
    assert all(f.shift == 0.0 for f in fits)


def test_a_scene_cut_resets_the_parameters():
    _truth, preds = jittered_sequence(frames=8, jitter=0.2)
    cuts = np.zeros(8, bool)
    cuts[5] = True
    out, fits = stabilise_sequence(preds, np.ones_like(preds, bool), "relative_disparity",
                                   StabiliseConfig(window_sigma=0), cuts=cuts)
    assert fits[5].reset and (fits[5].scale, fits[5].shift) == (1.0, 0.0)
    np.testing.assert_allclose(out[5], preds[5], rtol=1e-6)


def test_unrelated_frames_reset_by_themselves():
    rng = np.random.default_rng(5)
    a, b = rng.uniform(0.1, 1, (32, 32)), rng.uniform(0.1, 1, (32, 32))
    stab = TemporalStabiliser("relative_depth")
    stab.update(a, np.ones_like(a, bool))
    _, fit = stab.update(b, np.ones_like(b, bool))
    assert fit.reset and fit.agree < 0.5


def test_scene_cuts_ignore_exposure_but_find_a_new_shot():
    rng = np.random.default_rng(1)
    shot = rng.uniform(0, 1, (16, 16))
    grey = np.stack([shot, shot * 0.9 + 0.05, rng.uniform(0, 1, (16, 16))])
    assert scene_cuts(grey).tolist() == [False, False, True]


def test_flicker_measures_separate_global_from_local():
    truth, preds = jittered_sequence(noise=0.0)
    stable = stable_pixels(1.0 / truth)
    assert stable.all()
    assert temporal_flicker(preds, stable) > 0.05
    assert local_flicker(preds, stable) < 1e-6
    moved = truth.copy()
    moved[1] *= 1.05
    assert not stable_pixels(moved)[0].any() and stable_pixels(moved)[2].all()


def test_config_is_checked():
    with pytest.raises(ValueError):
        StabiliseConfig(param_ema=0.0)
    with pytest.raises(ValueError):
        StabiliseConfig(agree_tol=0.0)
    with pytest.raises(ValueError):
        StabiliseConfig(window_sigma=-1.0)
    with pytest.raises(ValueError):
        StabiliseConfig(window_tol=0.0)


def test_l1_fits_follow_the_majority_not_the_outliers():
    """35 % of the pixels off by +0.5: the L1 fit returns the majority's exact scale and shift
    (least squares is pulled); the scale-only fit is the weighted median of ratios."""
    rng = np.random.default_rng(0)
    x = rng.uniform(0.2, 2.0, (40, 40))
    y = 1.7 * x - 0.3
    outliers = np.zeros_like(x, bool)
    outliers[:14] = True
    mask = np.ones_like(x, bool)
    s, b = fit_scale_shift_l1(x, y + 0.5 * outliers, mask)
    assert s == pytest.approx(1.7, abs=1e-4) and b == pytest.approx(-0.3, abs=1e-4)
    _s_lsq, b_lsq = np.polyfit(x.ravel(), (y + 0.5 * outliers).ravel(), 1)
    assert abs(b_lsq + 0.3) > 0.1
    assert fit_scale_l1(x, 1.7 * x + 0.5 * outliers, mask) == pytest.approx(1.7, abs=1e-6)
    with pytest.raises(ValueError):
        fit_scale_shift_l1(np.ones_like(x), y, mask)
    with pytest.raises(ValueError):
        fit_scale_shift_l1(x, y, np.zeros_like(mask))


def test_a_real_change_of_a_large_region_does_not_move_the_rest():
    """A third of the picture (a band over all depths) comes 5 % closer, a real change within
    the agreement tolerance: the fit stays at identity (least squares would move all of it)
    and both parts keep their true values."""
    truth, _ = jittered_sequence(frames=4, jitter=0.0)
    preds = truth.copy()
    preds[2:, :, :21] *= 1.05
    s_lsq, _ = np.polyfit(preds[2].ravel(), truth[2].ravel(), 1)
    assert abs(s_lsq - 1) > 0.01
    out, fits = stabilise_sequence(preds, np.ones_like(preds, bool), "relative_disparity",
                                   StabiliseConfig(denoise=False, window_sigma=0))
    assert fits[2].scale == pytest.approx(1.0, abs=1e-5)
    assert fits[2].shift == pytest.approx(0.0, abs=1e-5)
    np.testing.assert_allclose(out[2], preds[2], rtol=1e-4)


def test_flicker_parts_split_total_into_global_and_local():
    """Local noise plus global jumps: the global part is positive and local <= total; a
    sequence without jumps has (almost) no global part."""
    truth, preds = jittered_sequence(frames=6, jitter=0.1, noise=0.01)
    stable = np.ones((5, *truth.shape[1:]), bool)
    parts = flicker_parts(preds + 1.0, stable)
    assert parts["global"] > 0.02 and 0 < parts["local"] <= parts["flicker"]
    rng = np.random.default_rng(2)
    calm = flicker_parts(truth + 1.0 + rng.normal(0, 0.01, truth.shape), stable)
    assert 0 <= calm["global"] < 0.05 * calm["flicker"]


def test_centred_smoothing_averages_noise_and_follows_a_steady_change_without_lag():
    """Per-pixel noise on a wall coming 1 % closer per frame: the centred window lowers the
    frame-to-frame change and the error, and the steady change is kept (no lag: the mean of
    the interior frames' error stays at zero), unlike a causal average."""
    rng = np.random.default_rng(4)
    truth, _ = jittered_sequence(frames=30, jitter=0.0)
    truth = truth * (1.01 ** np.arange(30))[:, None, None]
    noisy = truth + rng.normal(0, 0.01, truth.shape)
    valid = np.ones_like(truth, bool)
    out = smooth_sequence(noisy, valid, 3.0, 0.3)
    stable = np.ones((29, *truth.shape[1:]), bool)
    assert temporal_flicker(out, stable) < 0.5 * temporal_flicker(noisy, stable)
    interior = slice(6, 24)
    assert np.abs(out - truth)[interior].mean() < 0.4 * np.abs(noisy - truth)[interior].mean()
    bias = (out - truth)[interior].mean() / truth[interior].mean()
    assert abs(bias) < 1e-3  # a causal mean over the last 6 frames lags by ~2.5 %
    causal = np.stack([noisy[max(0, t - 6):t + 1].mean(0) for t in range(30)])
    assert (causal - truth)[interior].mean() / truth[interior].mean() < -0.02


def test_centred_smoothing_keeps_large_jumps_sharp_and_respects_segments():
    truth, _ = jittered_sequence(frames=12, jitter=0.0)
    seq = truth.copy()
    seq[6:, 10:20, 10:20] *= 2.0  # an object jumps closer: far beyond the tolerance
    valid = np.ones_like(seq, bool)
    valid[:, 0, 0] = False
    seq[:, 0, 0] = np.arange(12)  # invalid pixels keep their values
    out = smooth_sequence(seq, valid, 3.0, 0.3)
    np.testing.assert_allclose(out, seq, rtol=1e-6)  # everything else is constant in time
    ramp = truth * (1 + 0.05 * np.arange(12))[:, None, None]
    segments = np.array([0] * 6 + [1] * 6)
    split = smooth_sequence(ramp, np.ones_like(ramp, bool), 3.0, 0.3, segments=segments)
    alone = smooth_sequence(ramp[6:], np.ones_like(ramp[6:], bool), 3.0, 0.3)
    np.testing.assert_allclose(split[6:], alone, rtol=1e-6)  # nothing leaks across a cut
    assert not np.allclose(split[6:], smooth_sequence(ramp, np.ones_like(ramp, bool), 3.0, 0.3)[6:])


def test_whole_clip_smoothing_keeps_metric_bound_and_can_be_switched_off():
    rng = np.random.default_rng(7)
    depth = 4.0 * rng.uniform(0.8, 1.25, (10, 16, 16))
    valid = np.ones_like(depth, bool)
    out, _ = stabilise_sequence(depth, valid, "metric_depth", StabiliseConfig(metric_bound=0.05))
    ratio = out / depth
    assert ratio.min() >= 1 / 1.05 - 1e-5 and ratio.max() <= 1.05 + 1e-5
    off, _ = stabilise_sequence(depth, valid, "metric_depth",
                                StabiliseConfig(metric_bound=0.05, window_sigma=0))
    on_flicker = temporal_flicker(out, np.ones((9, 16, 16), bool))
    assert on_flicker < temporal_flicker(off, np.ones((9, 16, 16), bool))
