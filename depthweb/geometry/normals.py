"""Surface normals from a depth map, and their usual RGB picture."""

from __future__ import annotations

import numpy as np

from depthweb.geometry.backproject import backproject
from depthweb.types import Intrinsics


def _tangent_along_rows(p: np.ndarray) -> np.ndarray:
    """(H, W, 3): per pixel, the one-sided difference along the row with the smaller depth change.

    Choosing the smoother side keeps normals right on both sides of a depth edge instead of
    averaging foreground and background as a central difference would; a NaN side (invalid
    neighbour) is never chosen while the other side is valid. Border pixels use their only side.
    """
    diff = p[:, 1:] - p[:, :-1]  # (H, W-1, 3)
    forward, backward = diff[:, 1:], diff[:, :-1]  # seen from pixels 1 .. W-2
    use_back = ~(np.abs(forward[..., 2]) <= np.abs(backward[..., 2]))
    use_back &= np.isfinite(backward[..., 2])
    out = np.empty_like(p)
    out[:, 1:-1] = np.where(use_back[..., None], backward, forward)
    out[:, 0] = diff[:, 0]
    out[:, -1] = diff[:, -1]
    return out


def normals_from_depth(
    depth: np.ndarray, intrinsics: Intrinsics, valid_mask: np.ndarray | None = None
) -> np.ndarray:
    """Unit surface normals in the camera frame (x right, y down, z forward).

    The tangents along image rows and columns are one-sided differences of back-projected
    neighbours (the side with the smaller depth change); the normal is their cross product,
    oriented towards the camera (``n . p < 0`` for the surface point ``p``).

    Args:
        depth: (H, W) depth along the optical axis (any positive scale: normals are scale-free,
            but not shift-free, so align relative disparity or depth before using this).
        intrinsics: pinhole intrinsics in pixels of ``depth``.
        valid_mask: (H, W) bool, optional.

    Returns:
        (H, W, 3) float32 unit normals; NaN where the pixel or both neighbours along a direction
        are invalid.
    """
    p = backproject(depth, intrinsics, valid_mask)
    if min(p.shape[:2]) < 2:
        return np.full(p.shape, np.nan, dtype=np.float32)
    du = _tangent_along_rows(p)
    dv = _tangent_along_rows(p.swapaxes(0, 1)).swapaxes(0, 1)
    # n = dv x du: for a frontal plane y x x = -z, i.e. towards the camera
    n = np.empty_like(p)
    n[..., 0] = dv[..., 1] * du[..., 2] - dv[..., 2] * du[..., 1]
    n[..., 1] = dv[..., 2] * du[..., 0] - dv[..., 0] * du[..., 2]
    n[..., 2] = dv[..., 0] * du[..., 1] - dv[..., 1] * du[..., 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        n /= np.sqrt(np.einsum("hwc,hwc->hw", n, n))[..., None]
        away = np.einsum("hwc,hwc->hw", n, p) > 0
    n[away] *= -1.0
    return n


def normals_to_rgb(normals: np.ndarray) -> np.ndarray:
    """(H, W, 3) unit normals to an (H, W, 3) uint8 picture; invalid (NaN) pixels are black.

    Colour convention (the common "normal map" look): red = +x (right), green = -y (up),
    blue = -z (towards the camera), each mapped from [-1, 1] to [0, 255]; a surface facing
    the camera is (128, 128, 255).
    """
    normals = np.asarray(normals, dtype=np.float32)
    if normals.ndim != 3 or normals.shape[2] != 3:
        raise ValueError(f"normals must be (H, W, 3), got shape {normals.shape}")
    ok = np.isfinite(normals).all(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore"):
        rgb = normals * np.array([127.5, -127.5, -127.5], dtype=np.float32)
        rgb += 127.5
        np.clip(rgb, 0.0, 255.0, out=rgb)
        np.rint(rgb, out=rgb)
    return np.where(ok, rgb, 0.0).astype(np.uint8)
