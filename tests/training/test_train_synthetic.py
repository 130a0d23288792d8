"""Synthetic scenes: exact depth of known geometry, culling, determinism, rendering."""

from __future__ import annotations

import math

import numpy as np
import pytest

from depthweb.training.raycast import (
    Box,
    Camera,
    Cylinder,
    Material,
    Plane,
    Sphere,
    cast,
    rotation,
    screen_selector,
)
from depthweb.training.scenes import Light, Scene, random_material
from depthweb.training.synthetic import render, render_scene

GREY = Material("plain", np.full(3, 0.5), np.full(3, 0.5))


def _camera(height_m: float = 1.5, f: float = 100.0, h: int = 48, w: int = 64,
            pitch: float = 0.0, offset: float = 0.0) -> Camera:
    return Camera(f, f, w / 2 + offset, h / 2 + offset, rotation(0.0, pitch, 0.0),
                  np.array([0.0, height_m, 0.0]))


def _depth(prims, cam: Camera, h: int = 48, w: int = 64) -> np.ndarray:
    scene = Scene(cam, prims, Light(1.0, 0.3, direction=np.array([0.0, 1.0, 0.0])), True)
    return render(scene, h, w, np.random.default_rng(0)).depth


def test_floor_plane_depth_is_camera_height_times_focal_over_row_offset():
    cam = _camera(height_m=1.5, f=100.0)
    depth = _depth([Plane(np.array([0.0, 1.0, 0.0]), 0.0, GREY)], cam)
    v = np.arange(48) + 0.5  # pixel centres
    below = v > cam.cy
    expected = 1.5 * 100.0 / (v[below] - cam.cy)
    assert np.allclose(depth[below], expected[:, None], rtol=1e-6)
    assert np.all(np.isinf(depth[~below]))  # above the horizon: sky


def test_pitched_camera_floor_depth():
    pitch = -0.2  # looking down
    cam = _camera(height_m=2.0, f=80.0, pitch=pitch)
    depth = _depth([Plane(np.array([0.0, 1.0, 0.0]), 0.0, GREY)], cam)
    v = np.arange(48) + 0.5
    y = (v - cam.cy) / cam.fy  # camera ray (x, y, 1): world height change per unit depth
    down = y * math.cos(pitch) - math.sin(pitch)
    hit = down > 0
    assert np.allclose(depth[hit, 0], 2.0 / down[hit], rtol=1e-6)


def test_sphere_and_box_front_depths():
    cam = _camera(height_m=0.0, offset=0.5)
    centre = (24, 32)  # this pixel's centre (32.5, 24.5) is on the optical axis
    sphere = Sphere(np.array([0.0, 0.0, 5.0]), 1.0, GREY)
    assert _depth([sphere], cam)[centre] == pytest.approx(4.0, abs=1e-5)
    box = Box(np.array([0.0, 0.0, 6.0]), np.array([1.0, 1.0, 0.5]), 0.0, GREY)
    assert _depth([box], cam)[centre] == pytest.approx(5.5, abs=1e-5)
    pole = Cylinder(0.0, 3.0, 0.5, -1.0, 1.0, GREY)
    assert _depth([pole], cam)[centre] == pytest.approx(2.5, abs=1e-5)
    both = _depth([sphere, box, pole], cam)
    assert both[centre] == pytest.approx(2.5, abs=1e-5)  # the nearest surface occludes


def test_screen_culling_matches_brute_force():
    rng = np.random.default_rng(3)
    ahead = np.array([0.0, 0.0, 8.0])
    prims = [Box(rng.uniform(-3, 3, 3) + ahead, rng.uniform(0.2, 1.5, 3),
                 rng.uniform(0, 3), GREY) for _ in range(6)]
    prims += [Sphere(rng.uniform(-3, 3, 3) + ahead, 0.7, GREY),
              Plane(np.array([0.0, 1.0, 0.0]), -1.0, GREY)]
    cam = _camera(height_m=0.5, pitch=-0.1)
    d = cam.rays(48, 64)
    t_all, i_all = cast(prims, cam.origin, d)
    t_cull, i_cull = cast(prims, cam.origin, d, screen_selector(cam, 48, 64))
    assert np.array_equal(t_all, t_cull) and np.array_equal(i_all, i_cull)


@pytest.mark.parametrize("outdoor", [False, True])
def test_render_scene_is_seeded_and_plausible(outdoor):
    a = render_scene(7, 48, 64, outdoor=outdoor)
    b = render_scene(7, 48, 64, outdoor=outdoor)
    c = render_scene(8, 48, 64, outdoor=outdoor)
    assert np.array_equal(a.rgb, b.rgb) and np.array_equal(a.depth, b.depth)
    assert not np.array_equal(a.depth, c.depth)
    assert a.rgb.shape == (48, 64, 3) and a.rgb.dtype == np.uint8 and a.rgb.std() > 5
    finite = a.depth[np.isfinite(a.depth)]
    assert finite.min() > 0
    if outdoor:
        assert np.isinf(a.depth[0]).any()  # sky at the top
        assert np.isfinite(a.depth[-1]).all()  # ground at the bottom
    else:
        assert np.isfinite(a.depth).all() and finite.max() < 15.0  # inside a closed room


def test_random_material_colours_in_range():
    rng = np.random.default_rng(0)
    for _ in range(20):
        mat = random_material(rng)
        uv = rng.uniform(-5, 5, (100, 2))
        col = mat.albedo(uv, np.full(100, 0.01))
        assert col.shape == (100, 3) and col.min() >= 0 and col.max() <= 1
