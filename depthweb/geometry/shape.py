"""Depth for 3D views and derived normals: the stated shift rule and the far plane.

A relative prediction is only known up to an affine map in its own space (inverse depth for
``relative_disparity``, depth for ``relative_depth``), so turning it into a drawable depth needs
a shift. Taking the shift as 0 (the old rule) drops every pixel whose inverse depth is zero or
negative (22-51 % of the bundled student's pixels) and stretches the rest. The rule here:

1. **Reference pixels.** ``near`` is the 98th percentile of the valid pixels' nearness (inverse
   depth for disparity, depth's 2nd percentile for depth), ``far`` the 2nd percentile
   (depth's 98th): the extreme 2 % on each side cannot set the frame.
2. **Shift.** The far reference is moved ``FAR_BAND`` (5 %) of the 2-98 percentile span
   towards the near end (so a noisy sky plateau lies beyond it). The shift is the smallest
   ``t >= 0`` in the native space that puts this far reference at most ``FAR_NEAR_RATIO`` (10)
   times farther than the near reference: ``t = max(0, (hi - ratio * lo) / (ratio - 1))``
   with ``lo, hi`` the far and near references in inverse depth (for depth the same formula
   with the roles swapped). A map already within the ratio keeps shift 0 (the model's own zero
   is trusted).
3. **Far plane.** Every valid pixel beyond the far reference (the sky, including its zero or
   negative inverse depths) is drawn on a far plane at the far reference's depth, and pixels more
   than ``NEAR_SPAN`` times nearer than the near reference are drawn at that distance: no valid
   pixel is dropped, none is smeared into a streak.

Metric depth keeps shift 0 and uses the same far plane with ``METRIC_FAR_NEAR_RATIO`` (40).
The result is shape only, unknown scale, for relative kinds; it is normalised to a median of 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from depthweb.types import DepthKind

FAR_NEAR_RATIO = 10.0
"""Relative kinds: the far plane lies this many times farther than the near reference."""
METRIC_FAR_NEAR_RATIO = 40.0
"""Metric depth: far plane at this many times the near reference (2nd percentile) depth."""
NEAR_SPAN = 3.0
"""Pixels nearer than the near reference divided by this are drawn at that distance."""
NEAR_PERCENTILE, FAR_PERCENTILE = 98.0, 2.0
"""Percentiles of the prediction that set the near and far references."""
FAR_BAND = 0.05
"""Relative kinds: pixels within this share of the 2-98 percentile span of the far end go on
the far plane (a sky of near-constant, noisy values becomes one flat backdrop)."""
_MAX_SAMPLES = 200_000


@dataclass(frozen=True)
class ShapeRule:
    """The rule's numbers for one prediction.

    ``shift``: added to the prediction in its native space (0 for metric depth).
    ``near_depth``/``far_depth``: the near reference and the far plane in the *unnormalised*
    depth of the shifted prediction (``1 / (pred + shift)`` for disparity,
    ``pred + shift`` for depth). ``far_fraction``/``near_fraction``: shares of valid pixels
    drawn on the far plane / at the near limit. ``ratio``: far plane / near reference.
    """

    kind: DepthKind
    shift: float
    near_depth: float
    far_depth: float
    far_fraction: float
    near_fraction: float
    ratio: float

    def describe(self) -> str:
        """One sentence for the info panel, e.g. "inverse depth shifted by +1.67; ..."."""
        far = f"{100 * self.far_fraction:.1f} % of pixels on the far plane"
        if self.kind is DepthKind.METRIC_DEPTH:
            return f"metric; beyond {self.far_depth:.3g} m drawn on a far plane ({far})"
        space = "inverse depth" if self.kind is DepthKind.RELATIVE_DISPARITY else "depth"
        return (f"{space} shifted by {self.shift:+.3g} so the far plane lies "
                f"{self.ratio:g}x farther than the near end ({far})")


def _sample(values: np.ndarray) -> np.ndarray:
    step = max(1, values.size // _MAX_SAMPLES)
    return values[::step]


def shift_for_ratio(lo: float, hi: float, ratio: float = FAR_NEAR_RATIO) -> float:
    """The smallest ``t >= 0`` with ``hi + t <= ratio * (lo + t)`` and ``lo + t > 0``.

    ``lo < hi`` are the 2nd and 98th percentiles of a relative prediction (either kind).
    """
    if not ratio > 1:
        raise ValueError(f"ratio must be > 1, got {ratio}")
    return max(0.0, (hi - ratio * lo) / (ratio - 1.0))


def shape_rule(pred: np.ndarray, kind: DepthKind | str, valid: np.ndarray) -> ShapeRule | None:
    """The rule for ``pred`` (H, W) in its native space over ``valid`` (H, W) bool.

    Returns ``None`` when no valid pixel is left (nothing to draw).
    """
    kind = DepthKind(kind)
    with np.errstate(invalid="ignore"):
        ok = valid & np.isfinite(pred)
        if kind.is_metric:
            ok &= pred > 0
    if not ok.any():
        return None
    lo, hi = (float(x) for x in np.percentile(_sample(pred[ok]), [FAR_PERCENTILE,
                                                                   NEAR_PERCENTILE]))
    ratio = METRIC_FAR_NEAR_RATIO if kind.is_metric else FAR_NEAR_RATIO
    if kind.is_metric:
        shift, near = 0.0, lo
    elif not hi > lo:  # a constant map: a frontal plane at depth 1
        shift, near = 1.0 - hi, 1.0
    elif kind is DepthKind.RELATIVE_DISPARITY:
        far_ref = lo + FAR_BAND * (hi - lo)
        shift = shift_for_ratio(far_ref, hi, ratio)
        near = 1.0 / (hi + shift)
        ratio = (hi + shift) / (far_ref + shift)
    else:
        far_ref = hi - FAR_BAND * (hi - lo)
        shift = shift_for_ratio(lo, far_ref, ratio)
        near = lo + shift
        ratio = (far_ref + shift) / near
    raw = _raw_depth(pred[ok], kind, shift)
    far_depth = ratio * near
    with np.errstate(invalid="ignore"):
        far = float(np.mean(~(raw <= far_depth)))
        close = float(np.mean(raw < near / NEAR_SPAN))
    return ShapeRule(kind, float(shift), float(near), float(far_depth), far, close, ratio)


def _raw_depth(pred: np.ndarray, kind: DepthKind, shift: float) -> np.ndarray:
    """Unclamped depth of the shifted prediction; inf beyond infinity (disparity <= 0)."""
    values = pred.astype(np.float32) + np.float32(shift)
    if kind is not DepthKind.RELATIVE_DISPARITY:
        return values
    with np.errstate(divide="ignore", invalid="ignore"):
        values[~(values > 0) & np.isfinite(values)] = 0.0
        np.divide(np.float32(1.0), values, out=values)  # 1 / 0 = inf: beyond the far plane
    return values


def apply_rule(
    pred: np.ndarray, rule: ShapeRule, valid: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(depth, clamped): (H, W) float32 unnormalised depth of every valid pixel (NaN elsewhere)
    under ``rule``, and the (H, W) bool mask of pixels put on the far plane or the near limit."""
    ok = valid & np.isfinite(pred)
    raw = _raw_depth(pred, rule.kind, rule.shift)
    low, far = np.float32(rule.near_depth / NEAR_SPAN), np.float32(rule.far_depth)
    with np.errstate(invalid="ignore"):
        if rule.kind is not DepthKind.RELATIVE_DISPARITY:
            raw[~(raw > 0)] = 0.0  # at or behind the camera: the near limit
        clamped = ok & ((raw > far) | (raw < low))
        np.clip(raw, low, far, out=raw)
    raw[~ok] = np.nan
    return raw, clamped


def shape_depth(
    pred: np.ndarray, kind: DepthKind | str, valid: np.ndarray
) -> tuple[np.ndarray, ShapeRule | None]:
    """(depth, rule): (H, W) float32 depth for 3D views, NaN only where ``valid`` is False.

    Metric depth stays in metres (only the far plane and near limit apply); relative kinds
    are shifted by the rule and normalised to a median of 1 (shape only, unknown scale).
    """
    kind = DepthKind(kind)
    rule = shape_rule(pred, kind, valid)
    if rule is None:
        return np.full(pred.shape, np.nan, np.float32), None
    depth, _ = apply_rule(pred, rule, valid)
    if not kind.is_metric:
        finite = _sample(depth.reshape(-1))
        depth *= np.float32(1.0 / float(np.median(finite[np.isfinite(finite)])))
    return depth, rule
