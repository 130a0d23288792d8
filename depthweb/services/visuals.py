"""Pictures and meshes for the Studio: colourised depth, the 3D view, normals, click markers.

Relative predictions are never shown in 3D as if metric: :func:`shape_depth` turns them into a
unitless depth for the mesh and says so ("shape only, unknown scale").
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from depthweb.types import DepthKind, DepthResult

log = logging.getLogger(__name__)

SHAPE_ONLY = "shape only, unknown scale"
COLORMAPS = ("turbo", "inferno", "viridis", "gray")
"""Colour maps offered in the app (all known to ``geometry.colormap.colorize``)."""

MAX_RELATIVE_RANGE = 50.0
"""Compare ignores reference inverse depths below its 98th percentile / this (the far sky)."""


@dataclass(frozen=True)
class ShapeDepth:
    """Depth for the 3D views: (H, W) float32 along the optical axis, NaN only where invalid.

    ``unit`` is "m" for metric depth, "relative" otherwise; ``note`` is what the 3D view must
    say about it (``None`` for metric depth); ``rule`` says how the shift rule and far plane of
    :mod:`depthweb.geometry.shape` were applied.
    """

    depth: np.ndarray
    unit: str
    note: str | None
    rule: str = ""


def shape_depth(result: DepthResult) -> ShapeDepth:
    """Depth usable for 3D, the GLB/PLY files and derived normals (one rule for all of them).

    Metric depth stays in metres; relative kinds get the stated shift rule of
    :mod:`depthweb.geometry.shape` (complete surface, far plane, median 1) and the label
    "shape only, unknown scale".
    """
    from depthweb.geometry.shape import shape_depth as rule_depth

    depth, rule = rule_depth(result.depth, result.kind, result.valid_mask)
    text = rule.describe() if rule is not None else "no valid pixel"
    if result.kind.is_metric:
        return ShapeDepth(depth, "m", None, text)
    return ShapeDepth(depth, "relative", SHAPE_ONLY, text)


def _sample(values: np.ndarray, max_count: int = 200_000) -> np.ndarray:
    """An evenly strided subset of a 1-D array, for fast percentiles of big maps."""
    step = max(1, values.size // max_count)
    return values[::step]


def display_values(result: DepthResult, inverse: bool) -> tuple[np.ndarray, bool, str]:
    """(values, near_is_high, label) to colourise: depth, or inverse depth when ``inverse``.

    Values are (H, W) float32 with NaN invalid; ``near_is_high`` says whether large values are
    near (so the colour map can put near at the same end either way).
    """
    valid = result.valid_mask
    native = np.where(valid, result.depth, np.nan).astype(np.float32)
    is_inverse = result.kind is DepthKind.RELATIVE_DISPARITY
    if inverse == is_inverse:
        label = "inverse depth" if inverse else "depth"
        return native, is_inverse, f"{label} ({result.unit})"
    with np.errstate(invalid="ignore", divide="ignore"):
        flipped = np.where(np.isfinite(native) & (native > 0), 1.0 / native, np.nan)
    label = "inverse depth" if inverse else "depth"
    unit = "1/m" if inverse and result.kind.is_metric else "relative"
    return flipped.astype(np.float32), inverse, f"{label} ({unit})"


def depth_preview(result: DepthResult, cmap: str = "turbo", inverse: bool = True) -> np.ndarray:
    """Colourised (H, W, 3) uint8 picture of ``result``: near is the warm end of ``cmap``."""
    from depthweb.geometry.colormap import colorize

    values, near_is_high, _ = display_values(result, inverse)
    sample = _sample(values.reshape(-1))
    sample = sample[np.isfinite(sample)]
    value_range = tuple(np.percentile(sample, [2, 98])) if sample.size else None
    return colorize(values, cmap=cmap if cmap in COLORMAPS else "turbo", invert=near_is_high,
                    value_range=value_range)


def disparity_picture(disparity: np.ndarray, cmap: str = "turbo") -> np.ndarray:
    """Colourised (H, W, 3) uint8 stereo disparity (pixels, NaN invalid -> black); near warm."""
    from depthweb.geometry.colormap import colorize

    return colorize(disparity, cmap=cmap if cmap in COLORMAPS else "turbo", invert=True)


def view_mesh(shape: ShapeDepth, rgb: np.ndarray, result: DepthResult,
              max_vertices: tuple[int, int]):
    """The grid mesh the 3D views draw; the depth-jump cut is the same per source pixel
    whatever the grid's stride (``1 + DEFAULT_JUMP_THRESHOLD`` per pixel, compounded), so a
    coarse grid does not cut smooth slanted surfaces that a fine one keeps."""
    from depthweb.geometry.mesh import DEFAULT_JUMP_THRESHOLD, build_grid_mesh, grid_stride

    s = grid_stride(*shape.depth.shape, max_vertices)
    jump = (1.0 + DEFAULT_JUMP_THRESHOLD) ** s - 1.0
    return build_grid_mesh(shape.depth, rgb, result.intrinsics, stride=s, jump_threshold=jump)


def mesh_figure(shape: ShapeDepth, rgb: np.ndarray, result: DepthResult, title: str):
    """Interactive plotly figure (about 256x192 vertices, cut at depth jumps, photo colours),
    opening with its camera exactly at the photo's viewpoint (see :func:`viewpoint_camera`)."""
    from depthweb.geometry.mesh import PLOTLY_GRID
    from depthweb.services.mesh_figure import mesh_to_plotly

    mesh = view_mesh(shape, rgb, result, PLOTLY_GRID)
    if mesh.n_faces == 0:
        return None
    lo, hi = mesh.vertices.min(axis=0), mesh.vertices.max(axis=0)
    pad = 0.02 * float((hi - lo).max()) + 1e-6
    lo, hi = lo - pad, hi + pad
    ratio = (hi - lo) / float((hi - lo).max())
    look_z = float(np.median(mesh.vertices[::7, 2]))
    scene = {
        **{f"{a}axis_range": [float(lo[i]), float(hi[i])] for i, a in enumerate("xyz")},
        "aspectmode": "manual",
        "aspectratio": {a: float(ratio[i]) for i, a in enumerate("xyz")},
        "camera": viewpoint_camera(lo, hi, ratio, look_z),
    }
    return mesh_to_plotly(mesh, title=title, unit=shape.unit, note=shape.note, scene=scene,
                          height=540)


def viewpoint_camera(lo: np.ndarray, hi: np.ndarray, aspect: np.ndarray, look_z: float) -> dict:
    """A plotly scene camera at the camera-frame origin (the photo's viewpoint), looking along
    the optical axis (+z) at ``(0, 0, look_z)``, with -y up (the photo upright).

    Plotly places a data point ``p`` at ``aspect * (p - mid) / (hi - lo)`` in the scene's
    normalised coordinates (``mid`` the centre of the axis ranges ``lo``..``hi``), and reads
    ``eye``/``center`` in those coordinates; orbiting turns about ``center``.
    """
    lo, hi, aspect = (np.asarray(x, np.float64) for x in (lo, hi, aspect))

    def normalised(p: np.ndarray) -> dict:
        n = aspect * (p - 0.5 * (lo + hi)) / (hi - lo)
        return {"x": float(n[0]), "y": float(n[1]), "z": float(n[2])}

    return {"eye": normalised(np.zeros(3)), "center": normalised(np.array([0.0, 0.0, look_z])),
            "up": {"x": 0.0, "y": -1.0, "z": 0.0}, "projection": {"type": "perspective"}}


def write_mesh_files(
    shape: ShapeDepth, rgb: np.ndarray, result: DepthResult, out_dir: Path, stem: str,
    formats: tuple[str, ...] = ("glb", "ply"),
) -> list[Path]:
    """The downloadable mesh: ``<stem>.glb`` (photo texture) and/or ``<stem>.ply`` (vertex
    colours), as listed in ``formats``.

    Both use ``mesh.GLB_GRID`` (512x384 vertices); the GLB's texture is the full-resolution photo.
    Returns the written paths (empty when no surface is left after the discontinuity cut).
    """
    from depthweb.geometry.mesh import GLB_GRID
    from depthweb.geometry.meshfile import write_glb, write_ply

    mesh = view_mesh(shape, rgb, result, GLB_GRID)
    if mesh.n_faces == 0:
        return []
    written = []
    if "glb" in formats:
        written.append(Path(out_dir) / f"{stem}.glb")
        write_glb(mesh, written[-1], texture=rgb)
    if "ply" in formats:
        written.append(Path(out_dir) / f"{stem}.ply")
        write_ply(mesh, written[-1])
    return written


def normals_picture(
    result: DepthResult, shape: ShapeDepth, max_side: int = 1024
) -> tuple[np.ndarray, str]:
    """(h, w, 3) uint8 picture of surface normals (at most ``max_side`` pixels on the longer
    side) and a sentence saying where they came from (the model, or derived from depth)."""
    import cv2

    from depthweb.geometry.normals import normals_from_depth, normals_to_rgb

    if result.normals is not None:
        picture = downscale(normals_to_rgb(result.normals), max_side)
        return picture, f"Normals predicted by {result.model}"
    h, w = shape.depth.shape
    s = max(1.0, max(h, w) / max_side)
    depth, intrinsics = shape.depth, result.intrinsics
    if s > 1:  # nearest neighbour: no depths invented across edges
        size = (max(2, round(w / s)), max(2, round(h / s)))
        depth = cv2.resize(depth, size, interpolation=cv2.INTER_NEAREST)
        intrinsics = intrinsics.scaled(size[0] / w, size[1] / h)
    where = "metric depth" if shape.note is None else "shape-only depth"
    picture = normals_to_rgb(normals_from_depth(depth, intrinsics))
    return picture, f"Normals derived from the {where}"


def mark_points(
    rgb: np.ndarray,
    measure: list[tuple[int, int]] | tuple = (),
    anchors: list[tuple[int, int]] | tuple = (),
) -> np.ndarray:
    """A copy of ``rgb`` (H, W, 3) uint8 with numbered markers: measure points A/B in yellow
    joined by a line, anchors in cyan."""
    import cv2

    out = np.ascontiguousarray(rgb.copy())
    h, w = out.shape[:2]
    r = max(4, round(min(h, w) / 90))
    thick = max(2, r // 2)
    font = max(0.5, r / 8)
    if len(measure) == 2:
        cv2.line(out, tuple(map(int, measure[0])), tuple(map(int, measure[1])), (255, 230, 0),
                 thick, cv2.LINE_AA)
    groups = ((measure, (255, 230, 0), "AB"), (anchors, (0, 230, 255), None))
    for points, color, letters in groups:
        for i, (x, y) in enumerate(points):
            label = letters[i] if letters and i < len(letters) else str(i + 1)
            centre = (int(x), int(y))
            cv2.circle(out, centre, r + thick, (0, 0, 0), -1, cv2.LINE_AA)
            cv2.circle(out, centre, r, color, -1, cv2.LINE_AA)
            org = (int(x) + r + 4, int(y) - r - 2)
            cv2.putText(out, label, org, cv2.FONT_HERSHEY_SIMPLEX, font, (0, 0, 0), thick + 2,
                        cv2.LINE_AA)
            cv2.putText(out, label, org, cv2.FONT_HERSHEY_SIMPLEX, font, color, thick,
                        cv2.LINE_AA)
    return out


def downscale(rgb: np.ndarray, max_side: int) -> np.ndarray:
    """``rgb`` (H, W, C) shrunk (area filter) so its longer side is at most ``max_side``."""
    import cv2

    h, w = rgb.shape[:2]
    s = max(h, w) / float(max_side)
    if s <= 1:
        return rgb
    size = (max(1, round(w / s)), max(1, round(h / s)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


def png_bytes(rgb: np.ndarray) -> bytes:
    """PNG file bytes of an (H, W, 3) uint8 RGB picture."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG", compress_level=6)
    return buf.getvalue()
