"""Back-projection recovers analytic scenes; the measure tool and disparity helpers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from test_geometry_scenes import make_intrinsics, render_boxes, render_plane, unit

from depthweb.errors import InputError
from depthweb.geometry.backproject import (
    backproject,
    depth_to_disparity,
    disparity_to_depth,
    point_distance,
)

H, W = 120, 160


@pytest.mark.parametrize(
    ("normal", "offset"),
    [
        ([0.0, 0.0, -1.0], 2.0),  # frontal
        ([0.5, -0.3, -1.0], 3.0),  # oblique
        ([0.9, 0.1, -0.45], 1.5),  # steep (about 63 degrees)
        ([0.0, -0.8, -0.6], 40.0),  # far away, tilted like a floor
    ],
)
def test_backprojected_plane_satisfies_plane_equation(normal, offset):
    k = make_intrinsics(W, H, f=300.0)
    depth = render_plane(normal, offset, k, H, W).astype(np.float32)
    assert np.isfinite(depth).all()
    pts = backproject(depth, k)
    assert pts.shape == (H, W, 3) and pts.dtype == np.float32
    residual = np.abs(pts.astype(np.float64) @ unit(normal) + offset)
    scale = np.linalg.norm(pts, axis=-1)
    assert (residual / scale).max() < 1e-5
    # and z is the depth itself, not the distance along the ray
    assert np.array_equal(pts[..., 2], depth)


def test_backprojected_boxes_lie_on_box_faces():
    k = make_intrinsics(W, H)
    boxes = [((-0.6, -0.4, 2.0), (-0.1, 0.3, 2.6)), ((0.15, -0.1, 1.2), (0.5, 0.35, 1.7))]
    depth, label = render_boxes(boxes, k, H, W, wall_z=4.0)
    pts = backproject(depth.astype(np.float32), k).astype(np.float64)
    checked = 0
    for i, (lo, hi) in enumerate(boxes, start=1):
        p = pts[label == i]
        assert len(p) > 100
        lo, hi = np.asarray(lo), np.asarray(hi)
        tol = 1e-5 * np.linalg.norm(p, axis=1)[:, None]
        inside = ((p >= lo - tol) & (p <= hi + tol)).all(axis=1)
        on_face = ((np.abs(p - lo) <= tol) | (np.abs(p - hi) <= tol)).any(axis=1)
        assert inside.all() and on_face.all()
        checked += len(p)
    wall = pts[label == 0]
    assert np.abs(wall[:, 2] - 4.0).max() < 1e-6
    assert checked + len(wall) == H * W


def test_invalid_pixels_become_nan():
    k = make_intrinsics(8, 6, f=10.0)
    depth = np.full((6, 8), 2.0, dtype=np.float32)
    depth[0, 0], depth[1, 1], depth[2, 2], depth[3, 3] = 0.0, -1.0, np.nan, np.inf
    mask = np.ones((6, 8), dtype=bool)
    mask[4, 4] = False
    pts = backproject(depth, k, valid_mask=mask)
    bad = np.isnan(pts).all(axis=-1)
    expected = np.zeros((6, 8), dtype=bool)
    expected[[0, 1, 2, 3, 4], [0, 1, 2, 3, 4]] = True
    assert np.array_equal(bad, expected)
    assert np.isfinite(pts[~expected]).all()


def test_point_distance_matches_geometry():
    k = make_intrinsics(W, H)
    depth = np.full((H, W), 2.0, dtype=np.float32)
    # two pixels on the same row of a frontal plane: distance = du * z / fx
    d = point_distance(depth, k, (10, 50), (110, 50))
    assert d == pytest.approx(100 * 2.0 / k.fx, rel=1e-12)
    depth[80, 30] = 5.0
    pts = backproject(depth, k).astype(np.float64)
    expected = np.linalg.norm(pts[80, 30] - pts[20, 140])
    assert point_distance(depth, k, (30.4, 79.6), (140, 20)) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("pixel", [(-1, 5), (W, 5), (5, H), (-0.6, 3)])
def test_point_distance_rejects_pixels_outside(pixel):
    depth = np.ones((H, W), dtype=np.float32)
    with pytest.raises(InputError, match="outside"):
        point_distance(depth, make_intrinsics(W, H), pixel, (3, 3))


def test_point_distance_rejects_invalid_depth():
    depth = np.ones((H, W), dtype=np.float32)
    depth[3, 4] = np.nan
    with pytest.raises(InputError, match="no valid depth"):
        point_distance(depth, make_intrinsics(W, H), (4, 3), (10, 10))


def test_disparity_round_trip_keeps_invalid_nan():
    depth = np.array([[0.5, 2.0, 0.0], [-1.0, np.nan, np.inf]], dtype=np.float32)
    disp = depth_to_disparity(depth)
    assert disp.dtype == np.float32
    assert np.allclose(disp[0, :2], [2.0, 0.5])
    assert np.isnan(disp[0, 2]) and np.isnan(disp[1]).all()
    back = disparity_to_depth(disp)
    assert np.allclose(back[0, :2], [0.5, 2.0]) and np.isnan(back[0, 2]) and np.isnan(back[1]).all()
    assert depth_to_disparity(np.array([4.0])).dtype == np.float64
    assert math.isnan(float(disparity_to_depth(np.array([0.0]))[0]))
