"""Grid mesh: discontinuity cut, validity, decimation, colours, winding, plotly payload."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from test_geometry_scenes import make_intrinsics, plate_before_wall, render_plane, unit

from depthweb.geometry.backproject import backproject
from depthweb.geometry.mesh import build_grid_mesh, grid_stride
from depthweb.services.mesh_figure import mesh_to_plotly

H, W = 120, 160


def photo(h: int = H, w: int = W, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def face_depth_ratio(mesh) -> np.ndarray:
    z = mesh.vertices[mesh.faces, 2].astype(np.float64)
    return z.max(axis=1) / z.min(axis=1)


def reference_faces(depth: np.ndarray, ratio: float) -> set[tuple]:
    """Straightforward loops: triangles as tuples of (row, col) pixels."""
    out = set()
    h, w = depth.shape
    for r in range(h - 1):
        for c in range(w - 1):
            quad = {"tl": (r, c), "tr": (r, c + 1), "bl": (r + 1, c), "br": (r + 1, c + 1)}
            for tri in (("tl", "bl", "tr"), ("tr", "bl", "br")):
                px = [quad[name] for name in tri]
                zs = [float(depth[p]) for p in px]
                if all(math.isfinite(z) and z > 0 for z in zs) and max(zs) <= ratio * min(zs):
                    out.add(tuple(px))
    return out


def mesh_faces_as_pixels(mesh) -> set[tuple]:
    rows, cols = np.divmod(mesh.grid_index[mesh.faces], mesh.grid_shape[1])
    pairs = zip(rows.tolist(), cols.tolist(), strict=True)
    return {tuple(zip(r, c, strict=True)) for r, c in pairs}


@pytest.mark.parametrize("threshold", [0.05, 0.3, 0.99])
def test_cut_removes_exactly_the_faces_spanning_the_jump(threshold):
    k = make_intrinsics(W, H)
    depth, (r0, r1, c0, c1) = plate_before_wall(k, H, W, plate_z=2.0, wall_z=4.0)  # ratio 2
    mesh = build_grid_mesh(depth, photo(), k, max_vertices=None, jump_threshold=threshold)
    # counted by hand for the (tl, bl, tr) / (tr, bl, br) split: both triangles of every quad
    # along the four plate edges span the jump, plus 1 + 1 + 2 + 2 at the four corners
    spanning = 4 * (r1 - r0) + 4 * (c1 - c0) + 6
    assert mesh.n_faces == 2 * (H - 1) * (W - 1) - spanning
    assert face_depth_ratio(mesh).max() <= 1.0 + threshold
    assert set(np.unique(mesh.vertices[:, 2])) == {2.0, 4.0}


@pytest.mark.parametrize("threshold", [1.01, None])
def test_jump_below_threshold_is_kept(threshold):
    k = make_intrinsics(W, H)
    depth, _ = plate_before_wall(k, H, W, plate_z=2.0, wall_z=4.0)
    mesh = build_grid_mesh(depth, photo(), k, max_vertices=None, jump_threshold=threshold)
    assert mesh.n_faces == 2 * (H - 1) * (W - 1)


@pytest.mark.parametrize("scale", [0.01, 1.0, 100.0])
@pytest.mark.parametrize("slant_deg", [60.0, 70.0])
def test_steep_smooth_plane_keeps_every_face(slant_deg, scale):
    k = make_intrinsics(W, H, f=300.0)
    s = math.radians(slant_deg)
    depth = render_plane([math.sin(s), 0.0, -math.cos(s)], 3.0 * scale, k, H, W)
    step = np.maximum(depth[:, 1:] / depth[:, :-1], depth[:, :-1] / depth[:, 1:]).max()
    assert 1.01 < step < 1.05  # steep enough to matter, still smooth at the pixel scale
    mesh = build_grid_mesh(depth, photo(), k, max_vertices=None, jump_threshold=0.05)
    assert mesh.n_faces == 2 * (H - 1) * (W - 1)
    assert mesh.n_vertices == H * W


@pytest.mark.parametrize("holes", [False, True])
def test_matches_straightforward_loops(holes):
    rng = np.random.default_rng(7)
    h, w = 23, 31
    depth = rng.uniform(1.0, 1.03, (h, w))
    depth[5:12, 9:20] *= 1.6  # a step
    if holes:  # exercises the compacting path (unreferenced vertices dropped)
        depth[rng.random((h, w)) < 0.08] = np.nan
        depth[0, :5] = 0.0
        depth[3, 3] = -2.0
    k = make_intrinsics(w, h, f=40.0)
    mesh = build_grid_mesh(depth, photo(h, w), k, max_vertices=None, jump_threshold=0.05)
    assert mesh_faces_as_pixels(mesh) == reference_faces(depth, 1.05)
    # vertices: exactly the valid pixels, back-projected, in row-major order
    valid = np.isfinite(depth) & (depth > 0)
    assert np.array_equal(mesh.grid_index, np.flatnonzero(valid))
    pts = backproject(depth.astype(np.float32), k).reshape(-1, 3)
    assert np.allclose(mesh.vertices, pts[mesh.grid_index], rtol=1e-6, atol=0)
    assert np.isfinite(mesh.vertices).all()
    assert np.array_equal(mesh.colors, photo(h, w).reshape(-1, 3)[mesh.grid_index])


def test_valid_mask_removes_faces():
    k = make_intrinsics(W, H)
    depth = np.full((H, W), 3.0, dtype=np.float32)
    mask = np.ones((H, W), dtype=bool)
    mask[:, :80] = False
    mesh = build_grid_mesh(depth, photo(), k, max_vertices=None, valid_mask=mask)
    assert mesh.n_vertices == H * 80 and mesh.n_faces == 2 * (H - 1) * 79
    assert mesh.pixel_coords()[:, 0].min() == 80


def test_faces_point_towards_the_camera_and_dtypes():
    k = make_intrinsics(W, H)
    depth = render_plane([0.3, -0.2, -1.0], 2.0, k, H, W)
    mesh = build_grid_mesh(depth, photo(), k, max_vertices=None)
    assert mesh.vertices.dtype == np.float32 and mesh.faces.dtype == np.int32
    assert mesh.colors.dtype == np.uint8 and mesh.grid_index.dtype == np.int32
    v = mesh.vertices.astype(np.float64)[mesh.faces]
    normal = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])
    assert (np.einsum("ij,ij->i", normal, v[:, 0]) < 0).all()


@pytest.mark.parametrize(
    ("shape", "limit", "stride"),
    [
        ((768, 1024), (256, 192), 4),
        ((1024, 768), (256, 192), 4),  # portrait gets the same budget
        ((480, 640), (256, 192), 3),
        ((480, 640), None, 1),
        ((100, 100), (256, 192), 1),
    ],
)
def test_grid_stride(shape, limit, stride):
    assert grid_stride(*shape, limit) == stride


@pytest.mark.parametrize("stride", [2, 3, 4])
def test_decimated_vertices_stay_on_the_surface(stride):
    k = make_intrinsics(W, H, f=200.0)
    normal = unit([0.4, 0.2, -1.0])
    depth = render_plane(normal, 2.0, k, H, W)
    mesh = build_grid_mesh(depth, photo(), k, stride=stride, sampling="nearest")
    assert mesh.grid_shape == (H // stride, W // stride) and mesh.stride == stride
    assert mesh.n_faces == 2 * (H // stride - 1) * (W // stride - 1)
    residual = np.abs(mesh.vertices.astype(np.float64) @ normal + 2.0)
    assert residual.max() < 1e-5 * np.linalg.norm(mesh.vertices, axis=1).max()
    # the vertex sits at its pixel: re-projecting gives the pixel coordinates back
    v = mesh.vertices.astype(np.float64)
    uv = np.stack([k.fx * v[:, 0] / v[:, 2] + k.cx, k.fy * v[:, 1] / v[:, 2] + k.cy], axis=1)
    assert np.allclose(uv, mesh.pixel_coords(), atol=1e-3)


def test_area_sampling_averages_blocks_and_colours():
    k = make_intrinsics(W, H)
    rng = np.random.default_rng(3)
    depth = rng.uniform(2.0, 2.05, (H, W)).astype(np.float32)
    rgb = photo()
    mesh = build_grid_mesh(depth, rgb, k, stride=4, sampling="area", jump_threshold=None)
    blocks = depth.reshape(H // 4, 4, W // 4, 4).astype(np.float64).mean(axis=(1, 3))
    assert np.allclose(mesh.vertices[:, 2], blocks.reshape(-1), rtol=1e-6)
    means = rgb.reshape(H // 4, 4, W // 4, 4, 3).astype(np.float64).mean(axis=(1, 3))
    assert np.abs(mesh.colors.astype(np.float64) - means.reshape(-1, 3)).max() <= 0.5
    assert np.allclose(mesh.pixel_coords()[:2], [[1.5, 1.5], [5.5, 1.5]])


def test_texture_uv_maps_pixel_centres():
    k = make_intrinsics(W, H)
    mesh = build_grid_mesh(np.full((H, W), 2.0), photo(), k, stride=2)
    uv = mesh.texture_uv()
    assert uv.min() > 0 and uv.max() < 1
    assert np.allclose(uv[0], [(0 + 0.5) / W, (0 + 0.5) / H])
    assert np.allclose(uv[1], [(2 + 0.5) / W, (0 + 0.5) / H])


def test_empty_when_nothing_is_valid():
    k = make_intrinsics(W, H)
    mesh = build_grid_mesh(np.full((H, W), np.nan), photo(), k, max_vertices=None)
    assert mesh.n_vertices == 0 and mesh.n_faces == 0
    row = np.full((1, W), 2.0)
    row[0, 3] = np.nan
    line = build_grid_mesh(row, photo(1, W), k, max_vertices=None)  # no quads at all
    assert line.n_faces == 0 and line.n_vertices == W - 1 and line.faces.shape == (0, 3)


def test_rejects_mismatched_photo():
    with pytest.raises(ValueError, match="rgb"):
        build_grid_mesh(np.ones((H, W)), photo(H, W + 1), make_intrinsics(W, H))


def test_plotly_figure_is_compact_and_faithful():
    k = make_intrinsics(1024, 768, f=800.0)
    depth = render_plane([0.2, -0.1, -1.0], 3.0, k, 768, 1024)
    mesh = build_grid_mesh(depth, photo(768, 1024), k)  # default: 256 x 192
    assert mesh.grid_shape == (192, 256)
    fig = mesh_to_plotly(mesh, title="t", unit="relative", note="shape only, unknown scale")
    text = fig.to_json()
    assert len(text) < 3_000_000  # the DESIGN budget for an interactive plotly mesh
    data = json.loads(text)["data"][0]
    assert data["type"] == "mesh3d"
    assert data["i"]["dtype"] == "u2" and data["x"]["dtype"] == "f4"
    trace = fig.data[0]
    assert np.array_equal(np.asarray(trace.x), mesh.vertices[:, 0])
    assert np.array_equal(np.asarray(trace.k), mesh.faces[:, 2])
    assert np.asarray(trace.vertexcolor).shape == (mesh.n_vertices, 3)
    camera = fig.layout.scene.camera
    assert (camera.up.y, camera.eye.z) == (-1.0, -1.6)  # upright image, looking down +z
    assert "relative" in fig.layout.scene.xaxis.title.text
    assert "unknown scale" in fig.layout.title.text
