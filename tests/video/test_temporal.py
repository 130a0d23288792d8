"""Temporal stabilisation maths (pure numpy): global jumps removed, local changes kept,
metric scale bounded, resets on cuts, and the flicker measures."""

from __future__ import annotations

import numpy as np
import pytest

from depthweb.geometry.temporal import (
    StabiliseConfig,
    TemporalStabiliser,
    local_flicker,
    scene_cuts,
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
                                   StabiliseConfig(param_ema=1.0, denoise=False))
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
    cfg = StabiliseConfig(param_ema=ema, reference_ema=1.0, denoise=False)
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
                                   cuts=cuts)
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
