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
"""Shape-only depth from relative inverse depth keeps at most this far/near ratio (sky is cut)."""


@dataclass(frozen=True)
class ShapeDepth:
    """Depth for the 3D views: (H, W) float32 along the optical axis, NaN invalid.

    ``unit`` is "m" for metric depth, "relative" otherwise; ``note`` is what the 3D view must
    say about it (``None`` for metric depth).
    """

    depth: np.ndarray
    unit: str
    note: str | None


def shape_depth(result: DepthResult) -> ShapeDepth:
    """Depth usable for 3D: metric as is, relative scaled to a median of 1 with a note.

    Relative inverse depth (Depth Anything, MiDaS) is inverted with its unknown shift taken as 0,
    keeping values within ``MAX_RELATIVE_RANGE`` of the nearest (the far sky becomes invalid).
    """
    valid = result.valid_mask
    if result.kind.is_metric:
        return ShapeDepth(np.where(valid, result.depth, np.nan).astype(np.float32), "m", None)
    values = np.where(valid, result.depth, np.nan).astype(np.float64)
    note = SHAPE_ONLY
    if result.kind is DepthKind.RELATIVE_DISPARITY:
        with np.errstate(invalid="ignore"):
            positive = values[np.isfinite(values) & (values > 0)]
        if positive.size == 0:
            return ShapeDepth(np.full(values.shape, np.nan, np.float32), "relative", note)
        floor = np.percentile(positive, 98) / MAX_RELATIVE_RANGE
        with np.errstate(invalid="ignore", divide="ignore"):
            values = np.where(values > floor, 1.0 / values, np.nan)
        note = f"{SHAPE_ONLY} (relative inverse depth, zero shift assumed)"
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(values) & (values > 0)
    if ok.any():
        values = values / np.median(values[ok])
    return ShapeDepth(np.where(ok, values, np.nan).astype(np.float32), "relative", note)


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
    return colorize(values, cmap=cmap if cmap in COLORMAPS else "turbo", invert=near_is_high)


def disparity_picture(disparity: np.ndarray, cmap: str = "turbo") -> np.ndarray:
    """Colourised (H, W, 3) uint8 stereo disparity (pixels, NaN invalid -> black); near warm."""
    from depthweb.geometry.colormap import colorize

    return colorize(disparity, cmap=cmap if cmap in COLORMAPS else "turbo", invert=True)


def mesh_figure(shape: ShapeDepth, rgb: np.ndarray, result: DepthResult, title: str):
    """Interactive plotly figure (about 256x192 vertices, cut at depth jumps, photo colours)."""
    from depthweb.geometry.mesh import PLOTLY_GRID, build_grid_mesh, mesh_to_plotly

    mesh = build_grid_mesh(shape.depth, rgb, result.intrinsics, max_vertices=PLOTLY_GRID)
    if mesh.n_faces == 0:
        return None
    fig = mesh_to_plotly(mesh, title=title, unit=shape.unit, note=shape.note)
    fig.update_layout(height=520)
    return fig


def write_mesh_files(
    shape: ShapeDepth, rgb: np.ndarray, result: DepthResult, out_dir: Path, stem: str
) -> list[Path]:
    """The downloadable mesh: ``<stem>.glb`` (photo texture) and ``<stem>.ply`` (vertex colours).

    Both use ``mesh.GLB_GRID`` (512x384 vertices); the GLB's texture is the full-resolution photo.
    Returns the written paths (empty when no surface is left after the discontinuity cut).
    """
    from depthweb.geometry.mesh import GLB_GRID, build_grid_mesh
    from depthweb.geometry.meshfile import write_glb, write_ply

    mesh = build_grid_mesh(shape.depth, rgb, result.intrinsics, max_vertices=GLB_GRID)
    if mesh.n_faces == 0:
        return []
    glb, ply = Path(out_dir) / f"{stem}.glb", Path(out_dir) / f"{stem}.ply"
    write_glb(mesh, glb, texture=rgb)
    write_ply(mesh, ply)
    return [glb, ply]


def normals_picture(result: DepthResult, shape: ShapeDepth) -> tuple[np.ndarray, str]:
    """(H, W, 3) uint8 picture of surface normals and where they came from."""
    from depthweb.geometry.normals import normals_from_depth, normals_to_rgb

    if result.normals is not None:
        return normals_to_rgb(result.normals), f"surface normals predicted by {result.model}"
    normals = normals_from_depth(shape.depth, result.intrinsics)
    where = "metric depth" if shape.note is None else "shape-only depth"
    return normals_to_rgb(normals), f"surface normals derived from the {where}"


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
