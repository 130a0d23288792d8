"""Analytic scenes for the geometry tests (planes, boxes, a plate before a wall), and their checks.

Other ``test_geometry_*`` modules import the builders from here; the tests below make sure the
builders themselves are right, independently of the code under test.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from depthweb.types import Intrinsics, IntrinsicsSource


def make_intrinsics(width: int = 160, height: int = 120, f: float = 150.0) -> Intrinsics:
    """Slightly non-square pixels and an off-centre principal point (catches swapped axes)."""
    return Intrinsics(f, f * 1.02, width / 2 + 3.3, height / 2 - 2.7, IntrinsicsSource.USER)


def pixel_rays(height: int, width: int, k: Intrinsics) -> np.ndarray:
    """(H, W, 3) float64 rays ``((u - cx) / fx, (v - cy) / fy, 1)``."""
    u, v = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    return np.stack([(u - k.cx) / k.fx, (v - k.cy) / k.fy, np.ones_like(u)], axis=-1)


def unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


def render_plane(normal, offset: float, k: Intrinsics, height: int, width: int) -> np.ndarray:
    """(H, W) float64 depth of the plane ``normal . X + offset = 0``; NaN where not in front."""
    n = unit(normal)
    denom = pixel_rays(height, width, k) @ n
    with np.errstate(divide="ignore", invalid="ignore"):
        z = -offset / denom
    z[~(z > 0)] = np.nan
    return z


def render_boxes(
    boxes: list[tuple[tuple[float, float, float], tuple[float, float, float]]],
    k: Intrinsics,
    height: int,
    width: int,
    wall_z: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Ray-cast axis-aligned boxes ``(lo, hi)`` (and a frontal wall at ``wall_z``).

    Returns (H, W) float64 depth (NaN = nothing hit) and (H, W) int labels: -1 nothing,
    0 the wall, ``i + 1`` box ``i``.
    """
    rays = pixel_rays(height, width, k)
    depth = np.full((height, width), np.inf)
    label = np.full((height, width), -1, dtype=np.int64)
    if wall_z is not None:
        depth[:] = wall_z
        label[:] = 0
    for i, (lo, hi) in enumerate(boxes):
        with np.errstate(divide="ignore", invalid="ignore"):
            t1 = np.asarray(lo) / rays
            t2 = np.asarray(hi) / rays
        t_near = np.minimum(t1, t2).max(axis=-1)
        t_far = np.maximum(t1, t2).min(axis=-1)
        hit = (t_near <= t_far) & (t_near > 0) & (t_near < depth)  # ray z = 1: t is depth
        depth[hit] = t_near[hit]
        label[hit] = i + 1
    depth[~np.isfinite(depth)] = np.nan
    return depth, label


def plate_before_wall(
    k: Intrinsics, height: int, width: int, plate_z: float = 2.0, wall_z: float = 4.0
) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """A frontal plate at ``plate_z`` before a wall at ``wall_z``.

    Returns the depth and the plate's inclusive pixel bounds ``(r0, r1, c0, c1)``, computed from
    the plate's metric extent independently of the rendering.
    """
    x0, x1, y0, y1 = -0.35, 0.4, -0.3, 0.25  # metres at plate_z
    c0 = math.ceil(k.cx + k.fx * x0 / plate_z)
    c1 = math.floor(k.cx + k.fx * x1 / plate_z)
    r0 = math.ceil(k.cy + k.fy * y0 / plate_z)
    r1 = math.floor(k.cy + k.fy * y1 / plate_z)
    depth = np.full((height, width), wall_z)
    depth[r0 : r1 + 1, c0 : c1 + 1] = plate_z
    return depth, (r0, r1, c0, c1)


# --- the builders themselves ------------------------------------------------------------------


def test_frontal_plane_renders_constant_depth():
    k = make_intrinsics()
    z = render_plane([0, 0, -1], 2.5, k, 120, 160)
    assert np.allclose(z, 2.5, rtol=0, atol=1e-12)


@pytest.mark.parametrize("slant_deg", [30.0, 60.0])
def test_slanted_plane_render_satisfies_plane_equation(slant_deg):
    k = make_intrinsics(f=300.0)
    s = math.radians(slant_deg)
    n = unit([math.sin(s), 0.0, -math.cos(s)])
    z = render_plane(n, 3.0, k, 120, 160)
    pts = pixel_rays(120, 160, k) * z[..., None]
    assert np.isfinite(z).all()
    assert np.abs(pts @ n + 3.0).max() < 1e-12
    # a slant makes depth vary along x only
    assert np.ptp(z[:, 0] / z[:, -1]) < 1e-12 and z[0, 0] != pytest.approx(z[0, -1])


def test_box_render_hits_front_face_at_its_depth():
    k = make_intrinsics()
    depth, label = render_boxes([((-0.2, -0.2, 1.5), (0.2, 0.2, 2.0))], k, 120, 160, wall_z=5.0)
    # the principal point looks straight at the front face (z = 1.5)
    r, c = round(k.cy), round(k.cx)
    assert label[r, c] == 1 and depth[r, c] == pytest.approx(1.5)
    assert label[0, 0] == 0 and depth[0, 0] == 5.0
    assert set(np.unique(label)) == {0, 1}


def test_plate_bounds_match_the_metric_extent():
    k = make_intrinsics()
    depth, (r0, r1, c0, c1) = plate_before_wall(k, 120, 160)
    x = (np.array([c0 - 1, c0, c1, c1 + 1]) - k.cx) / k.fx * 2.0
    assert x[0] < -0.35 <= x[1] and x[2] <= 0.4 < x[3]
    assert (depth == 2.0).sum() == (r1 - r0 + 1) * (c1 - c0 + 1)
