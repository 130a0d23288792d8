"""Shared assertions on served 3D views: coverage of valid pixels, depth spread, camera.

Used by the Chromium test (figure and GLB as the browser got them) and by the service-level
test on synthetic maps, so both check exactly the same things.
"""

from __future__ import annotations

import io

import numpy as np

MIN_COVERAGE = 0.90
"""Share of mesh-grid cells over model-valid pixels that must hold a finite vertex."""
MAX_SPREAD = 50.0
"""Largest allowed 98th / 2nd percentile ratio of vertex depths."""


def valid_grid_cells(valid: np.ndarray, max_vertices: tuple[int, int]) -> int:
    """How many cells of the mesh grid (``geometry.mesh`` nearest sampling) sit on valid
    pixels of ``valid`` (H, W) bool."""
    from depthweb.geometry.mesh import grid_stride

    h, w = valid.shape
    s = grid_stride(h, w, max_vertices)
    off = (s - 1) // 2
    return int(valid[off::s, off::s][: h // s, : w // s].sum()) if s > 1 else int(valid.sum())


def coverage_and_spread(depths: np.ndarray, n_valid_cells: int) -> tuple[float, float]:
    """(finite vertices / valid cells, p98 / p2 of the vertex depths)."""
    z = np.abs(np.asarray(depths, np.float64))
    z = z[np.isfinite(z)]
    lo, hi = np.percentile(z, [2, 98])
    return z.size / max(n_valid_cells, 1), float(hi / lo)


def assert_complete_and_plausible(depths: np.ndarray, n_valid_cells: int, what: str) -> None:
    coverage, spread = coverage_and_spread(depths, n_valid_cells)
    assert coverage >= MIN_COVERAGE, f"{what}: only {100 * coverage:.1f} % of valid cells drawn"
    assert spread <= MAX_SPREAD, f"{what}: depth spread p98/p2 {spread:.1f}"


def plotly_camera_in_data(scene: dict) -> tuple[np.ndarray, np.ndarray]:
    """The camera ``eye`` and ``center`` of a plotly scene layout in data coordinates.

    Plotly draws data point ``p`` at ``aspect * (p - mid) / (hi - lo)``; this inverts it.
    """
    axes = [scene[f"{a}axis"]["range"] for a in "xyz"]
    lo, hi = np.array([a[0] for a in axes], float), np.array([a[1] for a in axes], float)
    aspect = np.array([scene["aspectratio"][a] for a in "xyz"], float)
    cam = scene["camera"]

    def data(point: dict) -> np.ndarray:
        n = np.array([point[a] for a in "xyz"], float)
        return 0.5 * (lo + hi) + n * (hi - lo) / aspect

    return data(cam["eye"]), data(cam["center"])


def assert_camera_at_viewpoint(scene: dict) -> None:
    """Eye at the camera-frame origin, looking along +z (the optical axis), -y up."""
    eye, center = plotly_camera_in_data(scene)
    size = max(abs(float(r)) for a in "xyz" for r in scene[f"{a}axis"]["range"])
    assert np.abs(eye).max() <= 1e-6 * size, f"eye at {eye}, not the viewpoint"
    direction = (center - eye) / np.linalg.norm(center - eye)
    assert direction[2] > 1 - 1e-9, f"looking along {direction}, not the optical axis"
    up = scene["camera"]["up"]
    assert (up["x"], up["y"], up["z"]) == (0, -1, 0)


def drawn_depths(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """z of the distinct vertices (N, 3) that at least one face (M, 3) uses: what is drawn."""
    used = np.unique(np.asarray(faces).reshape(-1))
    return np.unique(np.asarray(vertices)[used], axis=0)[:, 2]


def glb_vertex_depths(data: bytes) -> np.ndarray:
    """Depths along the optical axis of a GLB's drawn vertices, node transforms applied."""
    import trimesh

    scene = trimesh.load(io.BytesIO(data), file_type="glb", force="scene", process=False)
    parts = []
    for node in scene.graph.nodes_geometry:
        transform, name = scene.graph[node]
        geom = scene.geometry[name]
        verts = trimesh.transform_points(np.asarray(geom.vertices), transform)
        parts.append(np.column_stack([verts[np.unique(np.asarray(geom.faces))]]))
    points = np.unique(np.concatenate(parts), axis=0)
    return -points[:, 2]  # glTF looks down -z
