"""Temporal stabilisation maths (pure numpy): global jumps removed, local changes kept,
metric scale bounded, resets on cuts, and the flicker measures."""

from __future__ import annotations

import numpy as np
import pytest

from depthweb.geometry.temporal import (
    StabiliseConfig,
    TemporalStabiliser,
    flow_consistent,
    local_flicker,
    scene_cuts,
    stabilise_sequence,
    stable_pixels,
    temporal_flicker,
    warp_backward,
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


def _crop(field: np.ndarray, origin: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``field`` sampled (bilinear) on a ``shape`` grid starting at ``origin`` (x, y)."""
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float64)
    x, y = xx + origin[0], yy + origin[1]
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = x - x0, y - y0
    return ((field[y0, x0] * (1 - fx) + field[y0, x0 + 1] * fx) * (1 - fy)
            + (field[y0 + 1, x0] * (1 - fx) + field[y0 + 1, x0 + 1] * fx) * fy)


def panning_sequence(frames: int = 10, seed: int = 0, step: tuple[float, float] = (1.5, 0.5)):
    """A camera panning over a smooth disparity field with steps: per-frame true disparity
    (T, 48, 64), per-frame affine-jittered predictions, the exact (backward, forward) flows
    (T - 1, 48, 64, 2) and the jitter (scales, shifts)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:80, 0:110].astype(np.float64)
    field = 0.3 + 0.5 * (yy / 79) + 0.15 * np.sin(xx / 6.0) + 0.2 * ((xx // 25) % 2)
    offsets = np.array([(step[0] * t, step[1] * t) for t in range(frames)])
    truth = np.stack([_crop(field, o, (48, 64)) for o in offsets])
    scales = rng.uniform(0.85, 1.15, frames)
    shifts = rng.uniform(-0.08, 0.08, frames)
    preds = truth * scales[:, None, None] + shifts[:, None, None]
    back = np.broadcast_to(offsets[1:] - offsets[:-1], (48, 64, frames - 1, 2))
    back = np.moveaxis(back, 2, 0).copy()
    return truth, preds, (back, -back), (scales, shifts)


def test_warp_backward_samples_the_previous_frame_along_the_flow():
    prev = np.arange(20.0).reshape(4, 5)
    flow = np.zeros((4, 5, 2))
    flow[..., 0] = 1.0  # the point now at x was at x + 1 in the previous frame
    warped = warp_backward(prev, flow)
    np.testing.assert_allclose(warped[:, :4], prev[:, 1:])
    assert np.isnan(warped[:, 4]).all()
    flow[..., 0], flow[..., 1] = 0.5, 0.25
    np.testing.assert_allclose(warp_backward(prev, flow)[0, 0], 0.5 * 1 + 0.25 * 5)


def test_flow_consistency_rejects_where_forward_and_backward_disagree():
    _, _, (back, fwd), _ = panning_sequence(frames=2)
    ok = flow_consistent(back[0], fwd[0])
    assert ok[:-1, :-2].all() and not ok[:, -1].any()  # the last column: from outside
    bad = fwd[0].copy()
    bad[10:20, 10:20] += 3.0  # an occluder moving its own way
    ok = flow_consistent(back[0], bad)
    assert not ok[12:18, 13:18].any() and ok[30:40, 30:40].all()


def _affine_errors(out, truth, valid, scale0, shift0):
    """Per frame (t >= 1): |scale / scale0 - 1| and |shift - shift0| of out against truth."""
    errs = []
    for t in range(1, len(out)):
        s, b = np.polyfit(truth[t][valid[t]], out[t][valid[t]], 1)
        errs.append((abs(s / scale0 - 1), abs(b - shift0)))
    return np.array(errs)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_known_jitter_is_recovered_under_camera_motion_with_flow(seed):
    """A pan of (1.5, 0.5) px per frame and +-15 % scale jitter: with the flow-warped reference
    every frame relates to its truth by about the first frame's scale and shift (the residual
    drift comes from bilinear resampling of the steps); the same-pixel reference cancels the
    content's motion (a vertical gradient moving down) as if it were jitter and drifts."""
    truth, preds, flows, (scales, shifts) = panning_sequence(seed=seed)
    valid = np.isfinite(preds)
    raw = _affine_errors(preds, truth, valid, scales[0], shifts[0])
    outs = {ref: stabilise_sequence(np.nan_to_num(preds), valid, "relative_disparity",
                                    StabiliseConfig(reference=ref), flows=flows)
            for ref in ("flow", "pixel")}
    out, fits = outs["flow"]
    assert not any(f.reset for f in fits[1:])
    err = _affine_errors(out, truth, valid, scales[0], shifts[0])
    assert raw[:, 0].max() > 0.1
    assert err[:, 0].max() < 0.05 and err[:, 1].max() < 0.03
    assert err[:, 0].max() < 0.4 * raw[:, 0].max()
    pixel_err = _affine_errors(outs["pixel"][0], truth, valid, scales[0], shifts[0])
    assert pixel_err[:, 0].max() > 3 * err[:, 0].max()


def test_flow_reference_needs_matching_flow():
    _truth, preds, (back, fwd), _ = panning_sequence(frames=3)
    stab = TemporalStabiliser("relative_disparity", StabiliseConfig(reference="flow"))
    ones = np.ones(preds.shape[1:], bool)
    stab.update(preds[0], ones)
    with pytest.raises(ValueError, match="flow"):
        stab.update(preds[1], ones)
    with pytest.raises(ValueError, match="does not match"):
        stab.update(preds[1], ones, flow=(back[0][:-1], fwd[0][:-1]))
    with pytest.raises(ValueError):
        StabiliseConfig(reference="optical")
