"""Normals from depth: planes give their analytic normal, towards the camera; the RGB picture."""

from __future__ import annotations

import numpy as np
import pytest
from test_geometry_scenes import (
    make_intrinsics,
    plate_before_wall,
    render_boxes,
    render_plane,
    unit,
)

from depthweb.geometry.backproject import backproject
from depthweb.geometry.normals import normals_from_depth, normals_to_rgb

H, W = 90, 120


@pytest.mark.parametrize(
    "normal", [[0.0, 0.0, -1.0], [0.4, -0.3, -1.0], [-0.8, 0.2, -0.5], [0.0, -0.9, -0.4]]
)
def test_plane_normals_equal_the_analytic_normal(normal):
    k = make_intrinsics(W, H, f=200.0)
    depth = render_plane(normal, 2.0, k, H, W)
    n = normals_from_depth(depth.astype(np.float32), k)
    assert n.shape == (H, W, 3) and n.dtype == np.float32
    assert np.abs(n - unit(normal)).max() < 1e-4  # float32 back-projection limits precision
    pts = backproject(depth, k)
    assert (np.einsum("hwc,hwc->hw", n, pts) < 0).all()  # towards the camera


def test_normals_stay_right_on_both_sides_of_a_depth_edge():
    k = make_intrinsics(W, H)
    depth, _ = plate_before_wall(k, H, W, plate_z=1.5, wall_z=3.0)
    n = normals_from_depth(depth, k)
    # every pixel, edge pixels included, sees a frontal surface (a central difference would not)
    assert np.abs(n - np.array([0.0, 0.0, -1.0])).max() < 1e-5


def test_box_faces_get_their_face_normals():
    k = make_intrinsics(W, H)
    depth, label = render_boxes([((0.1, -0.3, 1.0), (0.5, 0.2, 1.6))], k, H, W, wall_z=3.0)
    n = normals_from_depth(depth, k)
    box = label == 1
    # the visible box faces: front (-z) and the left side (-x) facing the optical axis
    front = box & (np.abs(depth - 1.0) < 1e-9)
    assert front.sum() > 50
    interior = front & np.roll(front, 1, 0) & np.roll(front, -1, 0)
    interior &= np.roll(front, 1, 1) & np.roll(front, -1, 1)
    assert np.abs(n[interior] - [0, 0, -1]).max() < 1e-4
    side = box & ~front
    side_interior = side & np.roll(side, 1, 1) & np.roll(side, -1, 1)
    side_interior &= np.roll(side, 1, 0) & np.roll(side, -1, 0)
    assert side_interior.sum() > 10
    assert np.abs(n[side_interior] - [-1, 0, 0]).max() < 1e-3


def test_invalid_pixels_have_nan_normals():
    k = make_intrinsics(W, H)
    depth = np.full((H, W), 2.0, dtype=np.float32)
    depth[10, 10] = np.nan
    mask = np.ones((H, W), dtype=bool)
    mask[20, 20] = False
    n = normals_from_depth(depth, k, valid_mask=mask)
    assert np.isnan(n[10, 10]).all() and np.isnan(n[20, 20]).all()
    # neighbours use their other side and stay valid
    assert np.isfinite(n[10, 11]).all() and np.isfinite(n[11, 10]).all()
    assert np.isfinite(n).all(axis=-1).sum() == H * W - 2


def test_normals_to_rgb_convention():
    normals = np.array(
        [[[0.0, 0.0, -1.0], [1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [np.nan, np.nan, np.nan]]],
        dtype=np.float32,
    )
    rgb = normals_to_rgb(normals)
    assert rgb.dtype == np.uint8 and rgb.shape == (1, 4, 3)
    assert rgb[0, 0].tolist() == [128, 128, 255]  # facing the camera: the familiar blue
    assert rgb[0, 1].tolist() == [255, 128, 128]  # facing right
    assert rgb[0, 2].tolist() == [128, 255, 128]  # facing up (y is down in the camera frame)
    assert rgb[0, 3].tolist() == [0, 0, 0]
