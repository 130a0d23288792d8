"""Correction rules version 1, frozen: the anchor fit as it was when those labels were made.

Labels keep the rules their corrections were made with (``geometry.corrections``); the live
anchor fit in :mod:`depthweb.geometry.align` may change (honest refusals, shape rules), so
version 1 keeps its own copy here and must never change: one anchor fits the scale with the
shift taken as 0, two or more fit scale and shift by least squares in the native space, and the
result is inverted (disparity) or clipped at 0 (depth) without further checks.
"""

from __future__ import annotations

import numpy as np

from depthweb.errors import InputError
from depthweb.geometry.align import fit_scale, fit_scale_shift
from depthweb.geometry.backproject import disparity_to_depth
from depthweb.types import DepthKind


def anchors_v1(pred: np.ndarray, kind: DepthKind,
               anchors: list[tuple[float, float, float]]) -> np.ndarray:
    """Metric depth (H, W) float32 from ``pred`` (native space) and anchors ``(u, v, m)``."""
    h, w = pred.shape
    values, truths = [], []
    for u, v, d in anchors:
        col, row = round(float(u)), round(float(v))
        if not (0 <= col < w and 0 <= row < h) or not np.isfinite(pred[row, col]) or d <= 0:
            raise InputError(f"Anchor ({col}, {row}) cannot be used; re-enter it.")
        values.append(float(pred[row, col]))
        truths.append(float(d))
    x, t = np.array(values), np.array(truths)
    disparity = kind is DepthKind.RELATIVE_DISPARITY
    target = 1.0 / t if disparity else t
    try:
        scale, shift = ((fit_scale(x, target), 0.0) if len(x) == 1
                        else fit_scale_shift(x, target))
    except ValueError as exc:
        raise InputError("The anchors fall on equal predicted values; pick points at "
                         "different depths.") from exc
    if not scale > 0:
        raise InputError("The anchors contradict the predicted ordering (nearer points "
                         "predicted farther); check the anchor depths.")
    aligned = (scale * pred.astype(np.float64) + shift).astype(np.float32)
    depth = disparity_to_depth(aligned) if disparity else np.where(aligned > 0, aligned, np.nan)
    return depth.astype(np.float32, copy=False)
