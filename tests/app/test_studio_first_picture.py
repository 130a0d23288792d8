"""The first picture and the later files, on synthetic maps with known shape (no server).

The 3D assertions are the ones the Chromium test applies to the bundled examples
(``tests/scene_checks.py``): coverage of valid pixels, depth spread, plotly camera at the
photo's viewpoint.
"""

from __future__ import annotations

import json

import numpy as np
import plotly.io as pio
import pytest

from depthweb.geometry.mesh import GLB_GRID, PLOTLY_GRID
from depthweb.services import studio
from depthweb.types import DepthKind, DepthResult, Intrinsics
from tests.scene_checks import (
    assert_camera_at_viewpoint,
    assert_complete_and_plausible,
    drawn_depths,
    glb_vertex_depths,
    valid_grid_cells,
)

H, W = 300, 400


def scene_depth(seed: int = 0) -> np.ndarray:
    """Metric depth (m): a floor from 1.5 m to 8 m, a box at 2 m, a sky band at 300 m."""
    rng = np.random.default_rng(seed)
    rows = np.linspace(8.0, 1.5, H)[:, None] * np.ones((1, W))
    depth = rows * (1 + 0.01 * rng.standard_normal((H, W)))
    depth[150:220, 120:220] = 2.0
    depth[:70] = 300.0
    return depth.astype(np.float32)


def synthetic(kind: str) -> DepthResult:
    depth = scene_depth()
    if kind == "negative_disparity":
        values = 3.0 / depth - 1.1  # zero or negative far away, like the bundled student
        assert (values <= 0).mean() > 0.3
        kind = DepthKind.RELATIVE_DISPARITY
    else:
        values, kind = depth, DepthKind.METRIC_DEPTH
    return DepthResult(values.astype(np.float32), kind, Intrinsics.from_fov(W, H, 60.0),
                       "synthetic", timings_ms={"forward": 1.0})


def photo() -> np.ndarray:
    return np.random.default_rng(1).integers(0, 255, (H, W, 3), dtype=np.uint8)


@pytest.mark.parametrize("kind", ["negative_disparity", "metric"])
def test_first_picture_and_glb_are_complete_and_start_at_the_viewpoint(kind, tmp_path):
    res = synthetic(kind)
    st = studio.StudioState(photo(), res, "synthetic")
    first = studio.first_picture(st)
    assert not list(tmp_path.iterdir())  # the first picture writes no file
    figure = json.loads(pio.to_json(first.figure))
    assert_camera_at_viewpoint(figure["layout"]["scene"])
    trace = first.figure.data[0]
    vertices = np.column_stack([trace.x, trace.y, trace.z])
    faces = np.column_stack([trace.i, trace.j, trace.k])
    valid = res.valid_mask
    assert_complete_and_plausible(drawn_depths(vertices, faces),
                                  valid_grid_cells(valid, PLOTLY_GRID), f"{kind} plotly")
    glb = studio.glb_file(st, tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["synthetic.glb"]  # the viewer waits on nothing
    assert_complete_and_plausible(glb_vertex_depths(glb.read_bytes()),
                                  valid_grid_cells(valid, GLB_GRID), f"{kind} GLB")
    label = first.info["view_3d"]
    assert label == ("metric (metres)" if kind == "metric" else "shape only, unknown scale")
    assert "far plane" in first.info["shape_rule"]


def test_downloads_come_after_and_render_still_gives_everything(tmp_path):
    st = studio.StudioState(photo(), synthetic("negative_disparity"), "p")
    files, normals, note = studio.download_files(st, tmp_path / "later")
    names = sorted(p.name for p in files)
    assert names == sorted(["p.npy", "p.png", "p.json", "p_color.png", "p_normals.png", "p.ply"])
    assert note == "Normals derived from the shape-only depth"
    assert (normals.max(axis=-1) > 0).all()  # no hole over valid pixels
    sidecar = json.loads((tmp_path / "later" / "p.json").read_text())
    assert sidecar["view_3d"] == "shape only, unknown scale" and "shifted by" in sidecar[
        "shape_rule"]
    view = studio.render(st, tmp_path / "all", figure=False)
    assert sorted(p.name for p in view.files) == sorted([*names, "p.glb"])
    assert view.glb is not None and view.figure is None
    assert {"first_picture", "files"} <= set(view.info["timings_ms"])


def test_model3d_camera_looks_along_the_optical_axis():
    """Babylon's orbit camera (right-handed, as Gradio's viewer sets it up) sits at
    ``target + r (cos a sin b, cos b, sin a sin b)``; our GLB's optical axis is glTF's -z (the
    camera frame turned 180 deg about x). The stated angle between them is 0 deg."""
    alpha, beta, radius = (np.radians(studio.GLB_CAMERA[0]), np.radians(studio.GLB_CAMERA[1]),
                           studio.GLB_CAMERA[2])
    offset = np.array([np.cos(alpha) * np.sin(beta), np.cos(beta), np.sin(alpha) * np.sin(beta)])
    view = -offset / np.linalg.norm(offset)
    angle = np.degrees(np.arccos(np.clip(view @ np.array([0.0, 0.0, -1.0]), -1, 1)))
    assert angle < 1e-6 and radius is None  # the viewer frames the mesh itself
