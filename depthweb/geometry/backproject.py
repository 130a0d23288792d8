"""Depth map to 3D points in the camera frame, and the measure tool's 3D distance.

Camera frame: x right, y down, z forward (OpenCV). Pixel ``(u, v)`` is column ``u``, row ``v``
and sits at image coordinate ``(u, v)``: the ray through it is
``((u - cx) / fx, (v - cy) / fy, 1)``, and a point at depth ``z`` (distance along the optical
axis, not along the ray) is ``z`` times that ray.
"""

from __future__ import annotations

import math

import numpy as np

from depthweb.errors import InputError
from depthweb.types import Intrinsics


def depth_valid_mask(depth: np.ndarray, valid_mask: np.ndarray | None = None) -> np.ndarray:
    """Pixels with a usable depth: finite, strictly positive and inside ``valid_mask``.

    Shapes: ``depth`` (H, W); ``valid_mask`` (H, W) bool or None; returns (H, W) bool.
    """
    depth = np.asarray(depth)
    if depth.ndim != 2:
        raise ValueError(f"depth must be (H, W), got shape {depth.shape}")
    with np.errstate(invalid="ignore"):
        mask = np.isfinite(depth) & (depth > 0)
    if valid_mask is not None:
        if valid_mask.shape != depth.shape:
            raise ValueError(f"valid_mask shape {valid_mask.shape} != depth shape {depth.shape}")
        mask &= valid_mask.astype(bool, copy=False)
    return mask


def pixel_rays(height: int, width: int, intrinsics: Intrinsics) -> tuple[np.ndarray, np.ndarray]:
    """Ray slopes ``x/z`` per column (W,) and ``y/z`` per row (H,), float32."""
    xs = (np.arange(width, dtype=np.float64) - intrinsics.cx) / intrinsics.fx
    ys = (np.arange(height, dtype=np.float64) - intrinsics.cy) / intrinsics.fy
    return xs.astype(np.float32), ys.astype(np.float32)


def backproject(
    depth: np.ndarray, intrinsics: Intrinsics, valid_mask: np.ndarray | None = None
) -> np.ndarray:
    """3D point of every pixel in the camera frame.

    Args:
        depth: (H, W) depth along the optical axis (metres for metric depth).
        intrinsics: pinhole intrinsics in pixels of ``depth``.
        valid_mask: (H, W) bool, optional; pixels outside it are invalid.

    Returns:
        (H, W, 3) float32 points ``(x, y, z)``; NaN where the depth is invalid (not finite,
        not positive, or outside ``valid_mask``).
    """
    depth = np.asarray(depth)
    valid = depth_valid_mask(depth, valid_mask)
    h, w = depth.shape
    z = np.where(valid, depth, np.nan).astype(np.float32, copy=False)
    xs, ys = pixel_rays(h, w, intrinsics)
    points = np.empty((h, w, 3), dtype=np.float32)
    np.multiply(z, xs[None, :], out=points[..., 0])
    np.multiply(z, ys[:, None], out=points[..., 1])
    points[..., 2] = z
    return points


def _pixel_point(
    depth: np.ndarray, intrinsics: Intrinsics, pixel: tuple[float, float]
) -> np.ndarray:
    h, w = depth.shape
    u, v = (round(float(c)) for c in pixel)
    if not (0 <= u < w and 0 <= v < h):
        raise InputError(f"Point ({u}, {v}) is outside the {w}x{h} depth map; click inside it.")
    z = float(depth[v, u])
    if not (math.isfinite(z) and z > 0):
        raise InputError(f"Point ({u}, {v}) has no valid depth; pick a point on a surface.")
    return np.array(
        [(u - intrinsics.cx) / intrinsics.fx * z, (v - intrinsics.cy) / intrinsics.fy * z, z],
        dtype=np.float64,
    )


def point_distance(
    depth: np.ndarray,
    intrinsics: Intrinsics,
    p1: tuple[float, float],
    p2: tuple[float, float],
) -> float:
    """Euclidean 3D distance between the surfaces seen at two pixels.

    Args:
        depth: (H, W) depth along the optical axis.
        intrinsics: pinhole intrinsics in pixels of ``depth``.
        p1, p2: pixel positions ``(u, v)`` = (column, row); rounded to the nearest pixel.

    Returns:
        The distance in the unit of ``depth`` (metres for metric depth; for relative depth the
        number has no unit and only ratios between distances mean something).

    Raises:
        InputError: a pixel is outside the image or has no valid depth.
    """
    depth = np.asarray(depth)
    if depth.ndim != 2:
        raise ValueError(f"depth must be (H, W), got shape {depth.shape}")
    a = _pixel_point(depth, intrinsics, p1)
    b = _pixel_point(depth, intrinsics, p2)
    return float(np.linalg.norm(a - b))


def _invert_positive(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values)
    out_dtype = np.float64 if values.dtype == np.float64 else np.float32
    with np.errstate(invalid="ignore", divide="ignore"):
        ok = np.isfinite(values) & (values > 0)
        out = np.full(values.shape, np.nan, dtype=out_dtype)
        np.divide(1.0, values, out=out, where=ok)
    return out


def depth_to_disparity(depth: np.ndarray) -> np.ndarray:
    """``1 / depth`` with the same shape; NaN where depth is not finite or not positive.

    float64 input stays float64, anything else becomes float32.
    """
    return _invert_positive(depth)


def disparity_to_depth(disparity: np.ndarray) -> np.ndarray:
    """``1 / disparity`` with the same shape; NaN where disparity is not finite or not positive.

    A non-positive disparity means "at or beyond infinity" for an affine-aligned prediction, so
    it is invalid here rather than a huge depth.
    """
    return _invert_positive(disparity)
