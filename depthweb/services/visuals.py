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

OUTLIER_FACTOR = 3.0
"""The 3D views drop depths beyond this multiple of the 98th percentile or below the 2nd
percentile divided by it (stray points would otherwise set the framing); the raw exports keep
every value."""


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
        depth = np.where(valid, result.depth, np.nan).astype(np.float32)
        return ShapeDepth(drop_outliers(depth), "m", None)
    values = np.where(valid, result.depth, np.nan).astype(np.float64)
    note = SHAPE_ONLY
    if result.kind is DepthKind.RELATIVE_DISPARITY:
        with np.errstate(invalid="ignore"):
            positive = values[np.isfinite(values) & (values > 0)]
        if positive.size == 0:
            return ShapeDepth(np.full(values.shape, np.nan, np.float32), "relative", note)
        floor = np.percentile(_sample(positive), 98) / MAX_RELATIVE_RANGE
        with np.errstate(invalid="ignore", divide="ignore"):
            values = np.where(values > floor, 1.0 / values, np.nan)
        note = f"{SHAPE_ONLY} (relative inverse depth, zero shift assumed)"
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(values) & (values > 0)
    if ok.any():
        values = values / np.median(_sample(values[ok]))
    depth = np.where(ok, values, np.nan).astype(np.float32)
    return ShapeDepth(drop_outliers(depth), "relative", note)


def drop_outliers(depth: np.ndarray, factor: float = OUTLIER_FACTOR) -> np.ndarray:
    """``depth`` (H, W, NaN invalid) without values beyond ``factor`` x its 98th percentile or
    below its 2nd percentile / ``factor`` (set to NaN)."""
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(depth) & (depth > 0)
    if not ok.any():
        return depth
    lo, hi = np.percentile(_sample(depth[ok]), [2, 98])
    with np.errstate(invalid="ignore"):
        keep = (depth >= lo / factor) & (depth <= hi * factor)
    return np.where(keep, depth, np.float32(np.nan)).astype(np.float32)


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
    # Frame the central 99 % of the vertices (a few flying pixels must not shrink the view),
    # keep true proportions, and start slightly from the side and above the camera.
    lo, hi = np.percentile(mesh.vertices, [0.5, 99.5], axis=0)
    pad = 0.05 * float((hi - lo).max()) + 1e-6
    lo, hi = lo - pad, hi + pad
    ratio = (hi - lo) / float((hi - lo).max())
    fig.update_scenes(
        xaxis_range=[lo[0], hi[0]], yaxis_range=[lo[1], hi[1]], zaxis_range=[lo[2], hi[2]],
        aspectmode="manual", aspectratio=dict(x=ratio[0], y=ratio[1], z=ratio[2]),
        camera_eye=dict(x=0.5, y=-0.4, z=-1.3),
    )
    fig.update_layout(height=540)
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
