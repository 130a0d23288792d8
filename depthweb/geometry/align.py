"""Least-squares scale (and shift) alignment of relative predictions to metric targets.

Relative models are only defined up to an affine map in their native space: depth for
``relative_depth``, inverse depth (disparity) for ``relative_disparity``. Fits therefore happen
in that space, and only the result is converted to metric depth.

Anchor rules (:func:`fit_anchors`, used by the Studio and by Review's anchor corrections):

* **One anchor** determines one number. For metric depth it is a scale correction (the model's
  zero is kept). For relative kinds it is the scale of the shape drawn in 3D: the shift comes
  from the stated shift rule of :mod:`depthweb.geometry.shape` (an assumption, reported as
  ``determined="scale (shift from the shape rule)"``); pixels the rule puts on its far plane
  or near limit get no metric depth (NaN). An anchor on such a pixel is refused.
* **Two or more anchors** fit scale and shift by least squares in the native space; the
  scale must come out positive (else the anchors contradict the prediction's ordering).
* **Plausibility.** A fit that puts more than ``MAX_BEYOND_FRACTION`` of the judged pixels at
  zero/negative depth (beyond infinity for disparity, behind the camera for depth) or beyond
  ``MAX_DEPTH_RATIO`` times the range of the anchor depths is refused, not labelled metric.
* **Residual.** Leave-one-out: each anchor is predicted by the fit of the others (needs 3 or
  more anchors with a scale-and-shift fit); with 1 or 2 anchors it is "not measurable".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from depthweb.errors import InputError
from depthweb.geometry.shape import apply_rule, shape_rule
from depthweb.types import DepthKind


def _masked_pairs(
    pred: np.ndarray, target: np.ndarray, mask: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(pred)
    target = np.asarray(target)
    if pred.shape != target.shape:
        raise ValueError(f"pred shape {pred.shape} != target shape {target.shape}")
    ok = np.isfinite(pred) & np.isfinite(target)
    if mask is not None:
        if mask.shape != pred.shape:
            raise ValueError(f"mask shape {mask.shape} != pred shape {pred.shape}")
        ok &= mask.astype(bool, copy=False)
    return pred[ok].astype(np.float64), target[ok].astype(np.float64)


def _lstsq_scale_shift(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Closed-form 2x2 normal equations, centred for numerical stability."""
    if x.size < 2:
        raise ValueError(f"need at least 2 valid pixels to fit scale and shift, got {x.size}")
    mx, my = x.mean(), y.mean()
    dx = x - mx
    var = float(np.dot(dx, dx))
    if not var > 1e-12 * max(1.0, mx * mx) * x.size:
        raise ValueError("pred is constant over the mask: scale and shift are not determined")
    scale = float(np.dot(dx, y - my) / var)
    return scale, float(my - scale * mx)


def fit_scale_shift(
    pred: np.ndarray,
    target: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    trim: float = 0.0,
    iterations: int = 5,
) -> tuple[float, float]:
    """``(scale, shift)`` minimising ``sum((scale * pred + shift - target)**2)`` over ``mask``.

    Args:
        pred, target: same-shape arrays; non-finite entries are ignored.
        mask: bool array of the same shape, optional.
        trim: fraction in [0, 0.5) of the largest absolute residuals to ignore; with
            ``trim > 0`` the fit is repeated ``iterations`` times on the inliers of the last
            fit (trimmed least squares, robust to outliers such as sky or wrong GT).
    """
    if not 0.0 <= trim < 0.5:
        raise ValueError(f"trim must be in [0, 0.5), got {trim}")
    x, y = _masked_pairs(pred, target, mask)
    scale, shift = _lstsq_scale_shift(x, y)
    if trim == 0.0:
        return scale, shift
    n_keep = max(2, math.ceil((1.0 - trim) * x.size))
    for _ in range(iterations):
        resid = np.abs(scale * x + shift - y)
        inliers = np.argpartition(resid, n_keep - 1)[:n_keep]
        new = _lstsq_scale_shift(x[inliers], y[inliers])
        if np.allclose(new, (scale, shift), rtol=1e-12, atol=0.0):
            break
        scale, shift = new
    return scale, shift


def fit_scale(pred: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None) -> float:
    """``scale`` minimising ``sum((scale * pred - target)**2)`` over ``mask`` (no shift)."""
    x, y = _masked_pairs(pred, target, mask)
    den = float(np.dot(x, x))
    if x.size == 0 or den == 0.0:
        raise ValueError("pred is zero or empty over the mask: scale is not determined")
    return float(np.dot(x, y) / den)


MAX_BEYOND_FRACTION = 0.05
"""A fit may put at most this share of the judged pixels at zero, negative or absurd depth."""
MAX_DEPTH_RATIO = 1000.0
"""Depths beyond the anchor depths' range widened by this factor (both ways) are absurd."""

Anchor = tuple[float, float, float]


@dataclass(frozen=True)
class AnchorFit:
    """Outcome of :func:`fit_anchors`; check ``refusal`` (``None`` = usable) before ``depth``.

    Attributes:
        depth: (H, W) float32 metric depth in metres, NaN where undefined (invalid input, on
            the shape rule's far plane for one anchor, or beyond the fit); ``None`` if refused.
        scale, shift: the fit in the native space (``scale * pred + shift`` is inverse depth in
            1/m for ``relative_disparity``, depth in m otherwise).
        space: "inverse depth" or "depth".
        determined: what the anchors determined: "scale", "scale (shift from the shape rule)"
            or "scale and shift".
        anchors: number of anchors.
        loo_residual_m: leave-one-out RMS depth error at the anchors (m); ``None`` when not
            measurable (1 or 2 anchors) or when the fit was refused before it.
        beyond_fraction: share of the judged pixels the fit puts at zero, negative or absurd
            depth (set to NaN in ``depth``).
        refusal: ``None``, or the sentence to show the user (the fit must not be used).
    """

    depth: np.ndarray | None
    scale: float
    shift: float
    space: str
    determined: str
    anchors: int
    loo_residual_m: float | None
    beyond_fraction: float
    refusal: str | None = None

    @property
    def ok(self) -> bool:
        return self.refusal is None

    @property
    def residual_text(self) -> str:
        """e.g. "leave-one-out RMS 0.12 m over 3 anchors" or "not measurable with 2 anchors"."""
        if self.loo_residual_m is None:
            return f"not measurable with {self.anchors} anchor{'s' if self.anchors > 1 else ''}"
        return f"leave-one-out RMS {self.loo_residual_m:.3g} m over {self.anchors} anchors"

    def report(self) -> dict:
        """JSON-ready summary (no arrays)."""
        return {"anchors": self.anchors, "space": self.space, "determined": self.determined,
                "scale": self.scale, "shift": self.shift, "residual_m": self.loo_residual_m,
                "residual": self.residual_text, "beyond_fraction": self.beyond_fraction,
                "refusal": self.refusal}


class AnchorAlignment(NamedTuple):
    """Result of :func:`align_to_anchors` (unpacks as a 4-tuple)."""

    depth: np.ndarray  # (H, W) float32 metric depth, NaN where undefined
    scale: float
    shift: float
    residual_m: float  # leave-one-out RMS at the anchors (m); NaN when not measurable


def _anchor_pixels(shape: tuple[int, int], anchors: list[Anchor]) -> list[tuple[int, int, float]]:
    h, w = shape
    out = []
    for u, v, true_depth in anchors:
        u, v, true_depth = float(u), float(v), float(true_depth)
        if not (math.isfinite(u) and math.isfinite(v)):
            raise InputError(f"Anchor ({u}, {v}) needs a finite pixel column and row.")
        col, row = round(u), round(v)
        if not (0 <= col < w and 0 <= row < h):
            raise InputError(f"Anchor ({col}, {row}) is outside the {w}x{h} image.")
        if not (math.isfinite(true_depth) and true_depth > 0):
            raise InputError(f"Anchor ({col}, {row}) needs a positive depth in metres.")
        out.append((col, row, true_depth))
    return out


def fit_anchors(
    pred: np.ndarray,
    kind: DepthKind | str,
    anchors: list[Anchor],
    *,
    valid: np.ndarray | None = None,
) -> AnchorFit:
    """Fit metric depth to anchors following the module's anchor rules.

    Args:
        pred: (H, W) prediction in its native space (see ``kind``).
        kind: ``relative_disparity`` (fit in inverse depth), ``relative_depth`` or
            ``metric_depth`` (fit in depth).
        anchors: ``(u, v, true_depth_m)``: pixel column ``u``, row ``v``, depth in metres.
        valid: (H, W) bool, the pixels that count (default: finite ones; for metric depth
            also positive). Review passes its label's valid pixels minus its
            ignore/far masks; these pixels set the shape rule and are judged for plausibility.

    Returns:
        An :class:`AnchorFit`; a fit that must not be used carries a ``refusal`` sentence.

    Raises:
        InputError: no anchors, an anchor off the image, without prediction, or with a
            non-positive depth (malformed input, not a refused fit).
    """
    kind = DepthKind(kind)
    pred = np.asarray(pred)
    if pred.ndim != 2:
        raise ValueError(f"pred must be (H, W), got shape {pred.shape}")
    if not anchors:
        raise InputError("Add at least one anchor point with a known depth.")
    if valid is None:
        with np.errstate(invalid="ignore"):
            valid = np.isfinite(pred) & ((pred > 0) | (not kind.is_metric))
    points = _anchor_pixels(pred.shape, list(anchors))
    for col, row, _ in points:
        if not (math.isfinite(float(pred[row, col])) and valid[row, col]):
            raise InputError(f"Anchor ({col}, {row}) has no prediction; move it onto a surface.")
    if len(points) == 1:
        return _fit_one(pred, kind, points[0], valid)
    return _fit_many(pred, kind, points, valid)


def _fit_one(pred: np.ndarray, kind: DepthKind, anchor: tuple[int, int, float],
             valid: np.ndarray) -> AnchorFit:
    """One anchor: the scale of the metric map, or of the shape rule's depth (relative)."""
    col, row, true_depth = anchor
    disparity = kind is DepthKind.RELATIVE_DISPARITY
    space = "inverse depth" if disparity else "depth"
    if kind.is_metric:
        depth = np.where(valid, pred.astype(np.float64), np.nan)
        shift, clamped, determined = 0.0, np.zeros(pred.shape, bool), "scale"
    else:
        rule = shape_rule(pred, kind, valid)
        depth, clamped = apply_rule(pred, rule, valid)
        shift, determined = rule.shift, "scale (shift from the shape rule)"
        if clamped[row, col]:
            return _refused(kind, 1, determined, (
                f"Anchor ({col}, {row}) lies where the shape rule can only place a far plane or "
                "near limit; put the single anchor on a mid-distance surface or add a second "
                "anchor at a different depth."))
    k = true_depth / float(depth[row, col])
    metric = np.where(clamped, np.nan, k * depth)
    # native-space fit: depth = k * (pred + shift), inverse depth = (pred + shift) / k
    scale, shift_native = ((1.0 / k, shift / k) if disparity else (k, k * shift))
    fit = AnchorFit(None, scale, shift_native, space, determined, 1, None, 0.0)
    return _judged(fit, metric, valid & ~clamped, [true_depth])


def _fit_many(pred: np.ndarray, kind: DepthKind, points: list[tuple[int, int, float]],
              valid: np.ndarray) -> AnchorFit:
    """Two or more anchors: scale and shift by least squares, leave-one-out residual."""
    disparity = kind is DepthKind.RELATIVE_DISPARITY
    space = "inverse depth" if disparity else "depth"
    values = np.array([float(pred[r, c]) for c, r, _ in points])
    truths = np.array([z for _, _, z in points])
    targets = 1.0 / truths if disparity else truths
    determined = "scale and shift"
    try:
        scale, shift = fit_scale_shift(values, targets)
    except ValueError:
        return _refused(kind, len(points), determined,
                        "The anchors fall on equal predicted values; pick points at different "
                        "depths.")
    if not scale > 0:
        return _refused(kind, len(points), determined,
                        "The anchors contradict the predicted ordering (nearer points predicted "
                        "farther); check the anchor depths.")
    # float32 in place (a label is 7 megapixels at phone resolution): aligned <= 0 maps to a
    # negative or infinite depth, which the plausibility range below rejects like NaN
    metric = np.multiply(pred, np.float32(scale), dtype=np.float32)
    metric += np.float32(shift)
    if disparity:
        with np.errstate(divide="ignore"):
            np.divide(np.float32(1.0), metric, out=metric)
    np.copyto(metric, np.float32(np.nan), where=~valid)
    loo = _leave_one_out(values, truths, disparity) if len(points) >= 3 else None
    fit = AnchorFit(None, float(scale), float(shift), space, determined, len(points), loo, 0.0)
    return _judged(fit, metric, valid, list(truths))


def _leave_one_out(values: np.ndarray, truths: np.ndarray, disparity: bool) -> float:
    """RMS over anchors of (depth predicted by the fit of the other anchors - true depth)."""
    targets = 1.0 / truths if disparity else truths
    errors = []
    for i in range(len(values)):
        rest = np.arange(len(values)) != i
        try:
            scale, shift = fit_scale_shift(values[rest], targets[rest])
        except ValueError:
            return float("inf")
        fitted = scale * values[i] + shift
        if not fitted > 0:
            return float("inf")
        errors.append((1.0 / fitted if disparity else fitted) - truths[i])
    return float(np.sqrt(np.mean(np.square(errors))))


def _judged(fit: AnchorFit, metric: np.ndarray, judged: np.ndarray,
            truths: list[float]) -> AnchorFit:
    """``fit`` with its depth, or refused when too many judged pixels are implausible.
    ``metric`` (fresh, made by the caller) may be overwritten."""
    lo, hi = min(truths) / MAX_DEPTH_RATIO, max(truths) * MAX_DEPTH_RATIO
    with np.errstate(invalid="ignore"):
        inside = (metric >= lo) & (metric <= hi)  # NaN is outside
    n_judged = int(np.count_nonzero(judged))
    beyond = (1.0 - np.count_nonzero(inside & judged) / n_judged) if n_judged else 0.0
    if beyond > MAX_BEYOND_FRACTION:
        return AnchorFit(None, fit.scale, fit.shift, fit.space, fit.determined, fit.anchors,
                         fit.loo_residual_m, beyond, (
                             f"This fit would put {100 * beyond:.0f} % of the photo at negative "
                             f"or absurd depths (outside {lo:.3g} to {hi:.3g} m), so it is not "
                             "metric; check the anchor depths or add anchors nearer and "
                             "farther."))
    depth = metric.astype(np.float32, copy=False)  # callers hand a fresh array: reused
    np.copyto(depth, np.float32(np.nan), where=~inside)
    return AnchorFit(depth, fit.scale, fit.shift, fit.space, fit.determined, fit.anchors,
                     fit.loo_residual_m, beyond)


def _refused(kind: DepthKind, n: int, determined: str, sentence: str) -> AnchorFit:
    space = "inverse depth" if kind is DepthKind.RELATIVE_DISPARITY else "depth"
    return AnchorFit(None, float("nan"), float("nan"), space, determined, n, None, 0.0, sentence)


def align_to_anchors(
    pred: np.ndarray,
    kind: DepthKind | str,
    anchors: list[Anchor],
    *,
    valid: np.ndarray | None = None,
) -> AnchorAlignment:
    """:func:`fit_anchors`, raising ``InputError`` with the refusal sentence when refused.

    Returns ``AnchorAlignment(depth, scale, shift, residual_m)`` (residual NaN when not
    measurable).
    """
    fit = fit_anchors(pred, kind, anchors, valid=valid)
    if fit.refusal is not None:
        raise InputError(fit.refusal)
    residual = float("nan") if fit.loo_residual_m is None else fit.loo_residual_m
    return AnchorAlignment(fit.depth, fit.scale, fit.shift, residual)
