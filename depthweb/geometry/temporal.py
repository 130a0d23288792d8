"""Temporal stabilisation of per-frame depth, and the flicker measure it is judged by.

Per-frame predictions of an image model flicker: the unknown scale and shift of a relative
output (and the scale of a metric one) jump from frame to frame. :class:`TemporalStabiliser`
removes those jumps, frame by frame, in the model's own space (disparity for
``relative_disparity``, depth otherwise):

1. **Reference**: an exponential moving average of the previous stabilised frames, kept per
   pixel where consecutive frames agree and replaced where they do not (moving content).
2. **Fit**: the new frame's scale and shift (metric: scale only) that map it onto the reference,
   by least squares on the pixels that agree (residual below ``agree_tol`` times the reference
   value, or times 5 % of its 5-95 % range where that is larger), refitted ``iterations``
   times on the agreeing pixels of the last fit.
3. **Smoothing**: the applied parameters are an exponential moving average of the fitted ones,
   ``theta_t = param_ema * fit_t + (1 - param_ema) * theta_{t-1}``.
4. **Reset** on scene cuts (given by the caller, e.g. from :func:`scene_cuts`) and when fewer
   than ``min_agree`` of the valid pixels agree: the frame passes unchanged (``theta = (1, 0)``)
   and starts a new reference.

**Reference placement** (``reference``): ``"pixel"`` (default) compares a pixel with the same
pixel of the reference; ``"flow"`` first warps the reference into the current frame along a
dense optical flow given by the caller (:func:`warp_backward`; pixels whose forward-backward
flow is inconsistent, :func:`flow_consistent`, or that come from outside the frame start
afresh). On the ray-cast clips the flow placement is measured **worse** for the flicker measure
(``bench/bench_video.py``): along the flow the reference holds the previous depth of the same
scene point, and a camera moving forward brings every point closer, so the fit cancels that real
change and the output drifts where the true depth at a pixel stays put (floors, side walls).

Metric models keep metres: only a scale is fitted, and the applied scale and every output
pixel stay within ``[1 / (1 + metric_bound), 1 + metric_bound]`` times the model's own output.

With ``denoise`` (default), pixels that agree with the reference are output as the updated
reference (their EMA), which lowers the per-pixel noise of static content; pixels that
disagree (moving content, disocclusions) keep the aligned prediction. A persistent jump of the
model's output leaks ``1 - param_ema`` of itself into the output once, and so does every
random per-frame jump: the parameter EMA trades that against the noise of single fits. The
defaults come from ``bench/bench_video.py`` (ray-cast clips, bundled student): with
``param_ema = 1`` (no parameter smoothing) at least 95 % of an injected per-frame scale/shift
jitter's flicker is removed, with 0.7 only about 85 %; the smoothing that pays off is the EMA
of the reference (``reference_ema = 0.5``) and of agreeing pixels (``denoise``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from depthweb.geometry.align import fit_scale, fit_scale_shift
from depthweb.types import DepthKind


@dataclass(frozen=True)
class StabiliseConfig:
    """Knobs of :class:`TemporalStabiliser` (see the module docstring for their meaning)."""

    param_ema: float = 1.0
    reference_ema: float = 0.5
    agree_tol: float = 0.1
    min_agree: float = 0.2
    metric_bound: float = 0.1
    iterations: int = 3
    denoise: bool = True
    reference: str = "pixel"

    def __post_init__(self) -> None:
        if self.reference not in ("pixel", "flow"):
            raise ValueError(f"reference must be 'pixel' or 'flow', got {self.reference!r}")
        for name in ("param_ema", "reference_ema"):
            if not 0.0 < getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in (0, 1], got {getattr(self, name)}")
        if self.agree_tol <= 0 or not 0 <= self.min_agree < 1 or self.metric_bound < 0:
            raise ValueError("agree_tol must be > 0, min_agree in [0, 1), metric_bound >= 0")


@dataclass(frozen=True)
class FrameFit:
    """What was applied to one frame: ``output = scale * pred + shift``; ``agree`` is the
    fraction of valid pixels that agreed with the reference; ``reset`` marks a new segment."""

    scale: float
    shift: float
    agree: float
    reset: bool

    def as_dict(self) -> dict:
        return {"scale": round(self.scale, 6), "shift": round(self.shift, 6),
                "agree": round(self.agree, 4), "reset": self.reset}


def _tolerance(ref: np.ndarray, both: np.ndarray, rel: float) -> np.ndarray:
    """Per-pixel agreement tolerance (H, W): ``rel`` times ``|ref|``, at least ``rel`` times
    5 % of the reference's 5-95 % range (so values near zero do not demand exact agreement)."""
    values = ref[both]
    lo, hi = np.percentile(values, [5, 95]) if values.size else (0.0, 1.0)
    floor = 0.05 * (float(hi - lo) if hi > lo else abs(float(hi)) or 1.0)
    with np.errstate(invalid="ignore"):
        return rel * np.maximum(np.abs(np.nan_to_num(ref)), floor)


class TemporalStabiliser:
    """Stabilise a sequence frame by frame: ``update(pred, valid)`` -> (output, fit)."""

    def __init__(self, kind: DepthKind | str, config: StabiliseConfig | None = None) -> None:
        self.kind = DepthKind(kind)
        self.config = config or StabiliseConfig()
        self.reset()

    def reset(self) -> None:
        """Forget the reference and the parameters (a scene cut)."""
        self._ref: np.ndarray | None = None
        self._theta = (1.0, 0.0)

    def _fit(self, pred: np.ndarray, both: np.ndarray, tol: np.ndarray
             ) -> tuple[float, float, float]:
        """(scale, shift, agreeing fraction) of ``pred`` onto the reference over ``both``."""
        ref, agree = self._ref, both
        if self.kind.is_metric:
            scale, shift = fit_scale(pred, ref, both), 0.0
        else:  # robust start: the worst 30 % of residuals ignored
            scale, shift = fit_scale_shift(pred, ref, both, trim=0.3, iterations=2)
        for _ in range(self.config.iterations):
            agree = both & (np.abs(scale * pred + shift - ref) <= tol)
            if agree.sum() < 16:
                break
            if self.kind.is_metric:
                scale, shift = fit_scale(pred, ref, agree), 0.0
            else:
                scale, shift = fit_scale_shift(pred, ref, agree)
        return scale, shift, float(agree.sum()) / max(int(both.sum()), 1)

    def update(self, pred: np.ndarray, valid: np.ndarray, cut: bool = False,
               flow: tuple[np.ndarray, np.ndarray] | None = None
               ) -> tuple[np.ndarray, FrameFit]:
        """The stabilised frame (H, W) float32 (invalid pixels keep their value) and its fit.

        ``flow`` (only with ``reference="flow"``): (backward, forward) optical flow (H, W, 2)
        in pixels (x, y): backward from this frame to the previous one, forward the other way.
        """
        cfg = self.config
        pred = np.asarray(pred, dtype=np.float64)
        valid = np.asarray(valid, bool) & np.isfinite(pred)
        if cut or self._ref is None or self._ref.shape != pred.shape:
            self.reset()
            return self._start(pred, valid, 1.0)
        if cfg.reference == "flow":
            if flow is None:
                raise ValueError("reference='flow' needs the frame's (backward, forward) flow")
            bwd, fwd = flow
            if bwd.shape[:2] != pred.shape or fwd.shape[:2] != pred.shape:
                raise ValueError(f"flow {bwd.shape[:2]} does not match the frame {pred.shape}")
            self._ref = np.where(flow_consistent(bwd, fwd), warp_backward(self._ref, bwd),
                                 np.nan)
        both = valid & np.isfinite(self._ref)
        tol = _tolerance(self._ref, both, cfg.agree_tol)
        try:
            scale, shift, agree = self._fit(pred, both, tol)
        except ValueError:  # constant or empty overlap: nothing to align to
            scale, shift, agree = 1.0, 0.0, 0.0
        if agree < cfg.min_agree or not (np.isfinite(scale) and scale > 0):
            self.reset()
            return self._start(pred, valid, agree)
        a = cfg.param_ema
        scale = a * scale + (1 - a) * self._theta[0]
        shift = a * shift + (1 - a) * self._theta[1]
        if self.kind.is_metric:
            bound = 1.0 + cfg.metric_bound
            scale, shift = float(np.clip(scale, 1.0 / bound, bound)), 0.0
        self._theta = (scale, shift)
        out = scale * pred + shift
        agreeing = self._blend_reference(out, valid, tol)
        if cfg.denoise:
            out = np.where(agreeing, self._ref, out)
        if self.kind.is_metric:  # metres stay within the bound of the model's own, per pixel
            bound = 1.0 + cfg.metric_bound
            out = np.clip(out, pred / bound, pred * bound)
        return np.where(valid, out, pred).astype(np.float32), FrameFit(scale, shift, agree, False)

    def _start(self, pred: np.ndarray, valid: np.ndarray, agree: float
               ) -> tuple[np.ndarray, FrameFit]:
        self._ref = np.where(valid, pred, np.nan)
        return pred.astype(np.float32), FrameFit(1.0, 0.0, agree, True)

    def _blend_reference(self, out: np.ndarray, valid: np.ndarray, tol: np.ndarray) -> np.ndarray:
        """EMA of stabilised frames where they agree with the reference; replaced elsewhere.
        Returns the agreeing pixels (H, W) bool."""
        ref = self._ref
        agree = valid & np.isfinite(ref) & (np.abs(out - ref) <= tol)
        b = self.config.reference_ema
        new = np.where(valid, out, np.nan)
        self._ref = np.where(agree, b * out + (1 - b) * ref, new)
        return agree


def stabilise_sequence(
    preds: np.ndarray,
    valid: np.ndarray,
    kind: DepthKind | str,
    config: StabiliseConfig | None = None,
    cuts: np.ndarray | None = None,
    flows: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, list[FrameFit]]:
    """Stabilise (T, H, W) predictions; ``cuts`` (T,) bool marks frames that start a new shot.

    ``flows`` (with ``reference="flow"``): (backward, forward), each (T - 1, H, W, 2);
    ``backward[t - 1]`` maps frame ``t`` to frame ``t - 1``, ``forward[t - 1]`` the other way.
    Returns the stabilised (T, H, W) float32 and one :class:`FrameFit` per frame.
    """
    stab = TemporalStabiliser(kind, config)
    out = np.empty(np.shape(preds), np.float32)
    fits = []
    for t in range(len(preds)):
        pair = (flows[0][t - 1], flows[1][t - 1]) if flows is not None and t > 0 else None
        out[t], fit = stab.update(preds[t], valid[t],
                                  bool(cuts[t]) if cuts is not None else False, pair)
        fits.append(fit)
    return out, fits


def warp_backward(values: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """``values`` (H, W[, C]) of the previous frame sampled (bilinear) at ``x + flow(x)``:
    the previous frame seen from the current one, with ``flow`` (H, W, 2) the (x, y) pixel
    displacement from the current frame to the previous. NaN where the sample falls outside
    the frame; a NaN neighbour makes the sample NaN."""
    v = np.asarray(values, dtype=np.float64)
    h, w = v.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    x, y = xx + flow[..., 0], yy + flow[..., 1]
    inside = (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)
    x, y = np.clip(x, 0, w - 1), np.clip(y, 0, h - 1)
    x0 = np.minimum(np.floor(x).astype(np.intp), max(w - 2, 0))
    y0 = np.minimum(np.floor(y).astype(np.intp), max(h - 2, 0))
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    fx, fy = x - x0, y - y0
    if v.ndim == 3:
        fx, fy, inside = fx[..., None], fy[..., None], inside[..., None]
    out = ((v[y0, x0] * (1 - fx) + v[y0, x1] * fx) * (1 - fy)
           + (v[y1, x0] * (1 - fx) + v[y1, x1] * fx) * fy)
    return np.where(inside, out, np.nan)


def flow_consistent(backward: np.ndarray, forward: np.ndarray, tol_px: float = 0.5,
                    tol_rel: float = 0.05) -> np.ndarray:
    """(H, W) bool: pixels of the current frame whose backward flow, followed by the forward
    flow found there, comes back within ``tol_px + tol_rel * |backward|`` pixels (occlusions
    and wrong matches fail); both flows (H, W, 2) as in :func:`warp_backward`."""
    back = warp_backward(forward, backward)
    err = np.linalg.norm(backward + back, axis=-1)
    limit = tol_px + tol_rel * np.linalg.norm(backward, axis=-1)
    with np.errstate(invalid="ignore"):
        return np.isfinite(err) & (err <= limit)


def scene_cuts(grey: np.ndarray, threshold: float = 0.25) -> np.ndarray:
    """(T,) bool: frames whose small grey picture (T, h, w) in [0, 1] differs from the previous
    one by more than ``threshold`` (mean absolute difference after removing each frame's mean
    brightness, so exposure changes are no cut). Frame 0 is never a cut."""
    g = np.asarray(grey, dtype=np.float64)
    g = g - g.mean(axis=(1, 2), keepdims=True)
    diff = np.abs(np.diff(g, axis=0)).mean(axis=(1, 2))
    return np.concatenate([[False], diff > threshold])


def temporal_flicker(values: np.ndarray, stable: np.ndarray) -> float:
    """Mean absolute relative change between consecutive frames: ``|v_t - v_{t-1}| / |v_{t-1}|``
    averaged over the pixels where ``stable`` (T-1, H, W) is set (e.g. true depth changes by
    < 1 %). ``values`` (T, H, W) must be positive there (depth or disparity)."""
    v = np.asarray(values, dtype=np.float64)
    prev, cur = v[:-1], v[1:]
    ok = stable & np.isfinite(prev) & np.isfinite(cur) & (np.abs(prev) > 0)
    if not ok.any():
        return float("nan")
    return float(np.mean(np.abs(cur[ok] - prev[ok]) / np.abs(prev[ok])))


def local_flicker(values: np.ndarray, stable: np.ndarray) -> float:
    """:func:`temporal_flicker` after the best scale and shift of each frame onto the previous
    one (fitted on the ``stable`` pixels): what is left once global jumps are removed."""
    v = np.asarray(values, dtype=np.float64)
    aligned = v.copy()
    for t in range(1, len(v)):
        m = stable[t - 1] & np.isfinite(v[t]) & np.isfinite(v[t - 1])
        if m.sum() >= 2:
            s, b = fit_scale_shift(v[t], v[t - 1], m, trim=0.2)
            aligned[t] = s * v[t] + b
    prev, cur = v[:-1], aligned[1:]
    ok = stable & np.isfinite(prev) & np.isfinite(cur) & (np.abs(prev) > 0)
    if not ok.any():
        return float("nan")
    return float(np.mean(np.abs(cur[ok] - prev[ok]) / np.abs(prev[ok])))


def stable_pixels(depth: np.ndarray, tol: float = 0.01) -> np.ndarray:
    """(T-1, H, W) bool: pixels whose true depth (T, H, W) changes by less than ``tol``
    (relative) between consecutive frames; non-finite depth (sky) is excluded."""
    d = np.asarray(depth, dtype=np.float64)
    prev, cur = d[:-1], d[1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        ok = np.isfinite(prev) & np.isfinite(cur) & (prev > 0)
        return ok & (np.abs(cur - prev) < tol * np.where(ok, prev, 1.0))
