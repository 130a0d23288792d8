"""Temporal stabilisation of per-frame depth, and the flicker measures it is judged by.

Per-frame predictions of an image model flicker: the unknown scale and shift of a relative
output (and the scale of a metric one) jump from frame to frame. :class:`TemporalStabiliser`
removes those jumps, frame by frame, in the model's own space (disparity for
``relative_disparity``, depth otherwise):

1. **Reference**: an exponential moving average of the previous stabilised frames, kept per
   pixel where consecutive frames agree and replaced where they do not (moving content).
2. **Fit**: the new frame's scale and shift (metric: scale only) that map it onto the
   reference, by least *absolute* deviations over every pixel valid in both
   (:func:`fit_scale_shift_l1`): the median-like fit follows the majority of the picture and
   is not pulled by the minority that really changed (an object coming closer), which a
   least-squares fit on "agreeing" pixels was (``bench/bench_video.py``). A pixel *agrees*
   when its residual is below ``agree_tol`` times the reference value (at least ``agree_tol``
   times 5 % of the reference's 5-95 % range).
3. **Smoothing** (optional, off by default): ``theta_t = param_ema * fit_t + (1 - param_ema)
   * theta_{t-1}``. It lets ``1 - param_ema`` of every per-frame jump through; on the ray-cast
   clips the bundled student's frame-to-frame changes of scale/shift are a slow drift, not
   frame-level jitter, and smoothing the fitted parameters, or keeping only their
   high-frequency part over the whole clip, removes less of the global flicker (measured in
   the benchmark).
4. **Reset** on scene cuts (given by the caller, e.g. from :func:`scene_cuts`) and when fewer
   than ``min_agree`` of the valid pixels agree: the frame passes unchanged (``theta = (1, 0)``)
   and starts a new reference.

With ``denoise`` (default), pixels that agree with the reference are output as the updated
reference (their EMA with weight ``reference_ema``), which lowers the per-pixel noise of static
content; pixels that disagree (moving content, disocclusions) keep the aligned prediction.
A slower reference (``reference_ema`` 0.1) smooths more and removes more of the flicker, but
its lag costs accuracy on a moving camera (``docs/benchmarks.md``, Video); 0.5 does not.

5. **Centred smoothing** (:func:`smooth_sequence`, whole clips only: :func:`stabilise_sequence`
   applies it after the frame-by-frame pass when ``window_sigma`` > 0): each output pixel is
   the Gaussian-weighted mean (``window_sigma`` frames, over +-2 sigma, within one segment)
   of the same pixel in the neighbouring stabilised frames whose value is within
   ``window_tol`` of its own. The window is centred, so a steady change (a camera moving
   towards a wall) is followed without the lag of a causal filter; changes larger than
   ``window_tol`` between frames (objects crossing, disocclusions) stay sharp, smaller real
   changes are spread over about +-``window_sigma`` frames. On the ray-cast clips this is
   what removes most of the remaining flicker while AbsRel improves (``bench/notes/video.md``);
   the streaming :class:`TemporalStabiliser` alone does not smooth across future frames.

Metric models keep metres: only a scale is fitted, and the applied scale and every output
pixel stay within ``[1 / (1 + metric_bound), 1 + metric_bound]`` times the model's own output.

**Flicker** (:func:`flicker_parts`): the mean ``|v_t - v_{t-1}| / |v_{t-1}|`` over pixels whose
true depth changes by less than a tolerance (:func:`stable_pixels`); its *local* part is the
minimum of that same mean over one scale and shift per frame pair (a weighted L1 fit, so the
split does not depend on the choice of estimator and the *global* part, total minus local, is
never negative); the global part is what a perfect per-frame scale/shift correction on those
pixels would remove.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from depthweb.types import DepthKind

MAX_FIT_PIXELS = 65536  # L1 fits use at most this many pixels (a regular subsample)


@dataclass(frozen=True)
class StabiliseConfig:
    """Knobs of :class:`TemporalStabiliser` (see the module docstring for their meaning)."""

    param_ema: float = 1.0
    reference_ema: float = 0.5
    agree_tol: float = 0.1
    min_agree: float = 0.2
    metric_bound: float = 0.1
    denoise: bool = True
    window_sigma: float = 6.0
    window_tol: float = 0.3

    def __post_init__(self) -> None:
        for name in ("param_ema", "reference_ema"):
            if not 0.0 < getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in (0, 1], got {getattr(self, name)}")
        if self.agree_tol <= 0 or not 0 <= self.min_agree < 1 or self.metric_bound < 0:
            raise ValueError("agree_tol must be > 0, min_agree in [0, 1), metric_bound >= 0")
        if self.window_sigma < 0 or self.window_tol <= 0:
            raise ValueError("window_sigma must be >= 0 (0: no centred smoothing) and "
                             "window_tol > 0")


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


def _masked(pred: np.ndarray, target: np.ndarray, mask: np.ndarray,
            weights: np.ndarray | None, limit: int | None
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    m = np.asarray(mask, bool) & np.isfinite(pred) & np.isfinite(target)
    x, y = np.asarray(pred, np.float64)[m], np.asarray(target, np.float64)[m]
    w = np.ones_like(x) if weights is None else np.asarray(weights, np.float64)[m]
    if limit is not None and x.size > limit:  # a regular subsample, deterministic
        step = -(-x.size // limit)
        x, y, w = x[::step], y[::step], w[::step]
    return x, y, w


def fit_scale_shift_l1(pred: np.ndarray, target: np.ndarray, mask: np.ndarray,
                       weights: np.ndarray | None = None, iterations: int = 40,
                       limit: int | None = MAX_FIT_PIXELS) -> tuple[float, float]:
    """(scale, shift) minimising ``sum(weights * |scale * pred + shift - target|)`` over
    ``mask`` (iteratively reweighted least squares from the least-squares start). Raises
    ValueError when fewer than 2 pixels remain or ``pred`` is constant over them."""
    x, y, w = _masked(pred, target, mask, weights, limit)
    if x.size < 2 or np.ptp(x) <= 1e-12 * max(np.abs(x).max(), 1e-30):
        raise ValueError("pred is constant (or empty) over the mask: scale and shift are not "
                         "determined")
    eps = 1e-9 * max(float(np.ptp(y)), float(np.abs(y).max()), 1e-30)
    wi, coef = w, np.array([1.0, 0.0])
    for i in range(iterations + 1):
        sw, swx, swy = wi.sum(), (wi * x).sum(), (wi * y).sum()
        a, c = (wi * x * x).sum(), (wi * x * y).sum()
        det = a * sw - swx * swx
        if det <= 0:
            break
        new = np.array([(c * sw - swx * swy) / det, (a * swy - swx * c) / det])
        done = i > 0 and np.all(np.abs(new - coef) <= 1e-8 * (np.abs(coef) + eps))
        coef = new
        if done:
            break
        wi = w / np.maximum(np.abs(coef[0] * x + coef[1] - y), eps)
    return float(coef[0]), float(coef[1])


def fit_scale_l1(pred: np.ndarray, target: np.ndarray, mask: np.ndarray,
                 limit: int | None = MAX_FIT_PIXELS) -> float:
    """The scale minimising ``sum(|scale * pred - target|)`` over ``mask``: the median of
    ``target / pred`` weighted by ``|pred|`` (exact). ValueError when nothing is left."""
    x, y, _ = _masked(pred, target, mask, None, limit)
    ok = np.abs(x) > 0
    x, y = x[ok], y[ok]
    if x.size == 0:
        raise ValueError("no pixel with a non-zero prediction in the mask")
    ratio, wt = y / x, np.abs(x)
    order = np.argsort(ratio)
    cum = np.cumsum(wt[order])
    return float(ratio[order][np.searchsorted(cum, 0.5 * cum[-1])])


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
        ref = self._ref
        if self.kind.is_metric:
            scale, shift = fit_scale_l1(pred, ref, both), 0.0
        else:
            scale, shift = fit_scale_shift_l1(pred, ref, both)
        agree = both & (np.abs(scale * pred + shift - ref) <= tol)
        return scale, shift, float(agree.sum()) / max(int(both.sum()), 1)

    def update(self, pred: np.ndarray, valid: np.ndarray, cut: bool = False
               ) -> tuple[np.ndarray, FrameFit]:
        """The stabilised frame (H, W) float32 (invalid pixels keep their value) and its fit."""
        cfg = self.config
        pred = np.asarray(pred, dtype=np.float64)
        valid = np.asarray(valid, bool) & np.isfinite(pred)
        if cut or self._ref is None or self._ref.shape != pred.shape:
            self.reset()
            return self._start(pred, valid, 1.0)
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
) -> tuple[np.ndarray, list[FrameFit]]:
    """Stabilise (T, H, W) predictions; ``cuts`` (T,) bool marks frames that start a new shot.
    Frame by frame (:class:`TemporalStabiliser`), then, when ``config.window_sigma`` > 0, the
    centred :func:`smooth_sequence` within each segment (a cut or a reset starts one).
    Returns the stabilised (T, H, W) float32 and one :class:`FrameFit` per frame."""
    stab = TemporalStabiliser(kind, config)
    cfg = stab.config
    out = np.empty(np.shape(preds), np.float32)
    fits = []
    for t in range(len(preds)):
        out[t], fit = stab.update(preds[t], valid[t], bool(cuts[t]) if cuts is not None else False)
        fits.append(fit)
    if cfg.window_sigma > 0 and len(out) > 1:
        ok = np.asarray(valid, bool) & np.isfinite(out)
        out = smooth_sequence(out, ok, cfg.window_sigma, cfg.window_tol,
                              segments=np.cumsum([f.reset for f in fits]))
        if stab.kind.is_metric:  # metres stay within the bound of the model's own, per pixel
            bound = 1.0 + cfg.metric_bound
            raw = np.asarray(preds, np.float32)
            out = np.where(ok, np.clip(out, raw / bound, raw * bound), out)
    return out, fits


def smooth_sequence(values: np.ndarray, valid: np.ndarray, sigma: float, tol: float,
                    segments: np.ndarray | None = None) -> np.ndarray:
    """Centred temporal smoothing of (T, H, W) ``values`` (float32 out): each valid pixel of
    frame ``t`` becomes the mean of the same pixel in frames ``t - 2 sigma .. t + 2 sigma``
    of its segment (``segments`` (T,) labels; default one), weighted by a Gaussian of the
    frame distance and taken only where that frame's value is valid and within ``tol`` times
    the pixel's own value (so jumps larger than ``tol`` stay sharp). Invalid pixels keep their
    value. Near a segment's ends the window is one-sided."""
    vals = np.asarray(values, np.float32)
    x = np.where(valid, vals, np.float32(np.nan))
    n, radius = len(x), int(np.ceil(2 * sigma))
    seg = np.zeros(n, int) if segments is None else np.asarray(segments)
    out = vals.copy()
    num, den = np.empty(x.shape[1:], np.float32), np.empty(x.shape[1:], np.float32)
    near = np.empty(x.shape[1:], bool)
    for t in range(n):
        c = x[t]
        limit = np.float32(tol) * np.abs(c)
        num.fill(0.0)
        den.fill(0.0)
        for j in range(max(0, t - radius), min(n, t + radius + 1)):
            if seg[j] != seg[t]:
                continue
            w = np.float32(np.exp(-0.5 * ((j - t) / sigma) ** 2))
            with np.errstate(invalid="ignore"):
                np.less_equal(np.abs(x[j] - c), limit, out=near)  # NaN: False
            num += np.where(near, w * x[j], np.float32(0.0))
            den += w * near
        smoothed = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
        out[t] = np.where(den > 0, smoothed, vals[t])
    return out


def scene_cuts(grey: np.ndarray, threshold: float = 0.25) -> np.ndarray:
    """(T,) bool: frames whose small grey picture (T, h, w) in [0, 1] differs from the previous
    one by more than ``threshold`` (mean absolute difference after removing each frame's mean
    brightness, so exposure changes are no cut). Frame 0 is never a cut."""
    g = np.asarray(grey, dtype=np.float64)
    g = g - g.mean(axis=(1, 2), keepdims=True)
    diff = np.abs(np.diff(g, axis=0)).mean(axis=(1, 2))
    return np.concatenate([[False], diff > threshold])


def _pairs(values: np.ndarray, stable: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    v = np.asarray(values, dtype=np.float64)
    prev, cur = v[:-1], v[1:]
    ok = stable & np.isfinite(prev) & np.isfinite(cur) & (np.abs(prev) > 0)
    return prev, cur, ok


def temporal_flicker(values: np.ndarray, stable: np.ndarray) -> float:
    """Mean absolute relative change between consecutive frames: ``|v_t - v_{t-1}| / |v_{t-1}|``
    averaged over the pixels where ``stable`` (T-1, H, W) is set (e.g. true depth changes by
    < 1 %). ``values`` (T, H, W) must be positive there (depth or disparity)."""
    prev, cur, ok = _pairs(values, stable)
    if not ok.any():
        return float("nan")
    return float(np.mean(np.abs(cur[ok] - prev[ok]) / np.abs(prev[ok])))


def local_flicker(values: np.ndarray, stable: np.ndarray) -> float:
    """:func:`temporal_flicker` after the scale and shift of each frame that minimise it (the
    same objective: L1 weighted by ``1 / |v_{t-1}|``, over the ``stable`` pixels): what no
    per-frame scale/shift correction can remove. Never above :func:`temporal_flicker`."""
    prev, cur, ok = _pairs(values, stable)
    if not ok.any():
        return float("nan")
    aligned = cur.copy()
    for t in range(len(cur)):
        m = ok[t]
        try:
            s, b = fit_scale_shift_l1(cur[t], prev[t], m, 1.0 / np.where(m, np.abs(prev[t]), 1.0),
                                      limit=None)
        except ValueError:
            continue
        fitted = np.abs(s * cur[t][m] + b - prev[t][m]) / np.abs(prev[t][m])
        if fitted.sum() < (np.abs(cur[t][m] - prev[t][m]) / np.abs(prev[t][m])).sum():
            aligned[t] = s * cur[t] + b  # identity is a candidate: keep the better one
    return float(np.mean(np.abs(aligned[ok] - prev[ok]) / np.abs(prev[ok])))


def flicker_parts(values: np.ndarray, stable: np.ndarray) -> dict[str, float]:
    """``{"flicker", "local", "global"}``: :func:`temporal_flicker`, :func:`local_flicker` and
    their difference (the part one scale and shift per frame pair explains; >= 0)."""
    total, local = temporal_flicker(values, stable), local_flicker(values, stable)
    return {"flicker": total, "local": local, "global": total - local}


def stable_pixels(depth: np.ndarray, tol: float = 0.01) -> np.ndarray:
    """(T-1, H, W) bool: pixels whose true depth (T, H, W) changes by less than ``tol``
    (relative) between consecutive frames; non-finite depth (sky) is excluded."""
    d = np.asarray(depth, dtype=np.float64)
    prev, cur = d[:-1], d[1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        ok = np.isfinite(prev) & np.isfinite(cur) & (prev > 0)
        return ok & (np.abs(cur - prev) < tol * np.where(ok, prev, 1.0))
