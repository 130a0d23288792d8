"""Least-squares scale (and shift) alignment of relative predictions to metric targets.

Relative models are only defined up to an affine map in their native space: depth for
``relative_depth``, inverse depth (disparity) for ``relative_disparity``. Fits therefore happen
in that space, and only the result is converted to metric depth.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from depthweb.errors import InputError
from depthweb.geometry.backproject import disparity_to_depth
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


class AnchorAlignment(NamedTuple):
    """Result of :func:`align_to_anchors` (unpacks as a 4-tuple)."""

    depth: np.ndarray  # (H, W) float32 metric depth, NaN where undefined
    scale: float
    shift: float
    residual_m: float  # RMS of (aligned - true) depth at the anchors, metres


def _anchor_values(
    pred: np.ndarray, anchors: list[tuple[float, float, float]]
) -> tuple[np.ndarray, np.ndarray]:
    h, w = pred.shape
    values, truths = [], []
    for u, v, true_depth in anchors:
        u, v, true_depth = float(u), float(v), float(true_depth)
        if not (math.isfinite(u) and math.isfinite(v)):
            raise InputError(f"Anchor ({u}, {v}) needs a finite pixel column and row.")
        col, row = round(float(u)), round(float(v))
        if not (0 <= col < w and 0 <= row < h):
            raise InputError(f"Anchor ({col}, {row}) is outside the {w}x{h} image.")
        if not (math.isfinite(true_depth) and true_depth > 0):
            raise InputError(f"Anchor ({col}, {row}) needs a positive depth in metres.")
        value = float(pred[row, col])
        if not math.isfinite(value):
            raise InputError(f"Anchor ({col}, {row}) has no prediction; move it onto a surface.")
        values.append(value)
        truths.append(float(true_depth))
    return np.array(values), np.array(truths)


def align_to_anchors(
    pred: np.ndarray,
    kind: DepthKind | str,
    anchors: list[tuple[float, float, float]],
) -> AnchorAlignment:
    """Turn a prediction into metric depth using a few points of known depth.

    Args:
        pred: (H, W) prediction in its native space (see ``kind``).
        kind: ``relative_disparity``: fit ``scale * pred + shift`` to ``1 / true_depth`` and
            invert; ``relative_depth`` / ``metric_depth``: fit in depth space.
        anchors: ``(u, v, true_depth_m)`` with pixel column ``u`` and row ``v``. One anchor
            fits the scale only (shift 0); two or more fit scale and shift.

    Returns:
        ``AnchorAlignment(depth, scale, shift, residual_m)``; ``depth`` is NaN where the aligned
        value is not a positive depth.

    Raises:
        InputError: no anchors, an anchor off the image or without prediction, or anchors that
            contradict the prediction's ordering (a non-positive scale).
    """
    kind = DepthKind(kind)
    pred = np.asarray(pred)
    if pred.ndim != 2:
        raise ValueError(f"pred must be (H, W), got shape {pred.shape}")
    if not anchors:
        raise InputError("Add at least one anchor point with a known depth.")
    values, truths = _anchor_values(pred, anchors)
    disparity = kind is DepthKind.RELATIVE_DISPARITY
    scale, shift = _fit_anchors(values, 1.0 / truths if disparity else truths)
    aligned = (scale * pred.astype(np.float64) + shift).astype(np.float32)
    depth = disparity_to_depth(aligned) if disparity else np.where(aligned > 0, aligned, np.nan)
    fitted = scale * values + shift
    with np.errstate(invalid="ignore", divide="ignore"):
        fitted_depth = 1.0 / fitted if disparity else fitted
        residual = float(np.sqrt(np.mean((fitted_depth - truths) ** 2)))
    return AnchorAlignment(depth.astype(np.float32, copy=False), scale, shift, residual)


def _fit_anchors(values: np.ndarray, targets: np.ndarray) -> tuple[float, float]:
    """Scale only for one anchor, scale and shift for more; the scale must come out positive."""
    try:
        if len(values) == 1:
            scale, shift = fit_scale(values, targets), 0.0
        else:
            scale, shift = fit_scale_shift(values, targets)
    except ValueError as exc:
        raise InputError(
            "The anchors fall on equal predicted values; pick points at different depths."
        ) from exc
    if not scale > 0:
        raise InputError(
            "The anchors contradict the predicted ordering (nearer points predicted farther); "
            "check the anchor depths."
        )
    return scale, shift
