"""Stereo on pairs that are not rectified yet: rectify, check the cost, match, bring results back.

:func:`stereo_unrectified` runs SGBM (:func:`depthweb.models.stereo.compute_disparity`) on the
rectified pair of a :class:`~depthweb.models.rectify.Rectification` over the disparity range its
inlier matches span (negative values included), refuses a costly request before matching
(:func:`depthweb.models.stereo.check_cost`), and returns disparity and depth resampled at the
**original** left pixels:

- ``calibrated``: ``metric_depth`` (metres, from the calibrated baseline), along the original
  left camera's optical axis;
- ``essential``: ``relative_depth`` up to one global scale (the baseline is 1 unit), or
  ``metric_depth`` when the user states the baseline;
- ``fundamental``: disparity only (``relative_disparity``, larger is nearer); its relation to
  depth varies across the image, which the result's notes say.
"""

from __future__ import annotations

import math
import time

import cv2
import numpy as np

from depthweb.models.rectify import Rectification
from depthweb.models.stereo import (
    MODEL_NAME,
    SGBMParams,
    StereoResult,
    check_cost,
    compute_disparity,
)
from depthweb.types import DepthKind, DepthResult, Intrinsics


def search_range(rect: Rectification) -> tuple[int, int]:
    """(min_disparity, num_disparities) covering the inliers' range plus a margin of 15 % (at
    least 8 px) on each side; ``num_disparities`` a multiple of 16."""
    lo, hi = rect.disparity_range
    margin = max(8.0, 0.15 * (hi - lo))
    low = math.floor(lo - margin)
    num = max(16, math.ceil((hi + margin - low) / 16.0) * 16)
    return low, num


def _result(rect: Rectification, disp_rect: np.ndarray, intrinsics: Intrinsics,
            baseline_m: float | None) -> tuple[np.ndarray, DepthKind, list[str]]:
    geometry = "in the left photo's original geometry (resampled from the rectified pair)"
    if rect.method == "fundamental":
        sign = -1.0 if rect.disparity_range[0] + rect.disparity_range[1] < 0 else 1.0
        notes = ["rectified from the fundamental matrix (no usable focal length): disparity "
                 "only; its relation to depth varies across the image, so the 3D view is a "
                 f"rough shape, not a measurement; {geometry}"]
        return rect.to_original(sign * disp_rect), DepthKind.RELATIVE_DISPARITY, notes
    depth = rect.depth_original(disp_rect)
    if rect.method == "calibrated":
        return depth, DepthKind.METRIC_DEPTH, [f"metric depth from the calibrated baseline, "
                                               f"along the left camera's optical axis, {geometry}"]
    if baseline_m:
        return (depth * np.float32(baseline_m), DepthKind.METRIC_DEPTH,
                [f"metric from the baseline you gave ({baseline_m:g} m) and the essential "
                 f"matrix (focal {intrinsics.fx:.1f} px, {intrinsics.source}); {geometry}"])
    return depth, DepthKind.RELATIVE_DEPTH, [
        "depth known up to one global scale (the baseline is taken as 1 unit; give the "
        f"baseline in metres for metric depth), from the essential matrix (focal "
        f"{intrinsics.fx:.1f} px, {intrinsics.source}); {geometry}"]


def stereo_unrectified(
    left: np.ndarray,
    right: np.ndarray,
    rect: Rectification,
    intrinsics: Intrinsics,
    *,
    baseline_m: float | None = None,
    max_cost: float | None = None,
    params: SGBMParams | None = None,
) -> tuple[StereoResult, tuple[np.ndarray, np.ndarray]]:
    """Depth (or disparity) of the original left view of a pair rectified by ``rect``.

    ``left``/``right``: uint8 (H, W, 3) original views; ``intrinsics``: the original left
    camera's (what the result reports). Returns the result (arrays (H, W), NaN invalid; its
    ``disparity`` is the rectified disparity resampled at the original left pixels) and the
    rectified pair (uint8, what the UI shows with guide lines).
    """
    h, w = left.shape[:2]
    low, num = search_range(rect)
    check_cost(h, w, num, max_cost)
    params = params or SGBMParams()
    t0 = time.perf_counter()
    rect_l, rect_r = rect.warp(left, right)
    t1 = time.perf_counter()
    disp_rect = compute_disparity(rect_l, rect_r, num_disparities=num, min_disparity=low,
                                  params=params)
    t2 = time.perf_counter()
    values, kind, notes = _result(rect, disp_rect, intrinsics, baseline_m)
    disparity = rect.to_original(disp_rect)
    t3 = time.perf_counter()
    lo, hi = rect.disparity_range
    notes = [*notes, f"rectified ({rect.method}) from {rect.inliers} inlier matches; median "
             f"epipolar error {rect.epipolar_before_px:.2f} px before, "
             f"{rect.epipolar_after_px:.2f} px after; disparities searched {low} to "
             f"{low + num} px (inliers span {lo:.1f} to {hi:.1f})", *rect.notes]
    result = DepthResult(
        depth=values, kind=kind, intrinsics=intrinsics, model=MODEL_NAME,
        weights=f"opencv {cv2.__version__} StereoSGBM {params.mode}, {rect.method} rectification",
        timings_ms={"rectify_warp": (t1 - t0) * 1e3, "disparity": (t2 - t1) * 1e3,
                    "back_to_original": (t3 - t2) * 1e3},
        notes=notes,
    )
    return StereoResult(depth=result, disparity=disparity), (rect_l, rect_r)


__all__ = ["search_range", "stereo_unrectified"]
