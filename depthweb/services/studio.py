"""Studio use case: a photo in, a depth map with its 3D view, exports, measurements and anchors.

The web app's predict tab and its ``predict`` API endpoint both go through here; the functions
take and return plain Python / numpy values (no gradio). Model calls go through ``predict_fn``
(default :func:`depthweb.services.predict.predict_images`) so the app can wrap them for a GPU
queue (``spaces.GPU`` on Hugging Face ZeroGPU).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from depthweb.config import Settings
from depthweb.errors import InputError
from depthweb.imaging import LoadedImage, load_image
from depthweb.models.specs import ModelSpec
from depthweb.services import visuals
from depthweb.services.export import write_outputs
from depthweb.services.predict import CameraHint, predict_images
from depthweb.types import DepthKind, DepthResult

log = logging.getLogger(__name__)

Progress = Callable[[float, str], None]
PredictFn = Callable[..., list[DepthResult]]
SLIDER_MAX_SIDE = 1600
"""The slider shows at most this many pixels on the longer side (downloads are full size)."""
MAX_ANCHORS = 1000
"""At most this many scale anchors per request."""


def _noop(_fraction: float, _desc: str) -> None:
    return None


def json_safe(value):
    """``value`` with numpy scalars as Python numbers and NaN/inf as ``None`` (strict JSON)."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# --------------------------------------------------------------------------- model choices
@dataclass(frozen=True)
class ModelChoice:
    """One entry of the model dropdown."""

    name: str
    kind: DepthKind
    available: bool
    description: str = ""

    @property
    def label(self) -> str:
        kind = "metric" if self.kind.is_metric else "relative"
        where = "local" if self.available else "not downloaded"
        return f"{self.name} · {kind} · {where}"


def model_choices(settings: Settings) -> list[ModelChoice]:
    """Every registered model with its kind and whether its weights are on this machine.

    Models with local weights come first (in spec-table order), then the others.
    """
    from depthweb.models.loading import is_available
    from depthweb.models.registry import list_specs

    def choice(spec: ModelSpec) -> ModelChoice:
        return ModelChoice(spec.name, spec.kind, is_available(spec, settings), spec.description)

    choices = [choice(s) for s in list_specs(settings)]
    return [c for c in choices if c.available] + [c for c in choices if not c.available]


# --------------------------------------------------------------------------- state
@dataclass
class StudioState:
    """What the app remembers between a prediction and the clicks that follow it.

    ``rgb``: the photo, uint8 (H, W, 3); ``native``: the model's prediction; ``aligned``: its
    metric version after scale anchors (or ``None``); ``points``: up to two measure clicks;
    ``anchors``: ``(u, v, true_depth_m)`` clicks.
    """

    rgb: np.ndarray
    native: DepthResult
    stem: str
    aligned: DepthResult | None = None
    alignment: dict | None = None
    points: list[tuple[int, int]] = field(default_factory=list)
    anchors: list[tuple[int, int, float]] = field(default_factory=list)

    @property
    def current(self) -> DepthResult:
        """The depth the views and measurements use: aligned if available, else native."""
        return self.aligned if self.aligned is not None else self.native


@dataclass
class StudioView:
    """Everything the predict tab shows for a state; ``files`` are in a request folder."""

    slider: tuple[np.ndarray, np.ndarray]
    figure: object | None
    glb: Path | None
    files: list[Path]
    normals: np.ndarray
    normals_note: str
    info: dict
    stem: str = "image"

    def file(self, suffix: str) -> Path | None:
        """The written file named ``<stem><suffix>`` (e.g. ``.npy``, ``_color.png``), if any."""
        return next((f for f in self.files if f.name == self.stem + suffix), None)


def _positive_or_none(value: float | None, label: str) -> float | None:
    if value is None or value == 0:
        return None
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise InputError(f"The {label} must be a positive number (or empty), got {value:g}.")
    return value


def camera_hint(
    focal_px: float | None = None, focal_35mm: float | None = None, fov_deg: float | None = None
) -> CameraHint:
    """What the user typed about the camera; empty or 0 means unknown."""
    fov = _positive_or_none(fov_deg, "field of view")
    if fov is not None and fov >= 180:
        raise InputError(f"The field of view must be below 180 degrees, got {fov:g}.")
    return CameraHint(focal_px=_positive_or_none(focal_px, "focal length in pixels"),
                      fov_deg=fov,
                      focal_35mm=_positive_or_none(focal_35mm, "35 mm equivalent focal length"))


def decode_photo(
    image_path: str | Path | None, settings: Settings, name: str | None = None
) -> tuple[LoadedImage, float]:
    """The photo, decoded safely (size limit before pixels, EXIF applied), and the time taken."""
    if not image_path:
        raise InputError("Upload a photo first.")
    t0 = time.perf_counter()
    image = load_image(image_path, max_pixels=settings.max_pixels, name=name)
    return image, (time.perf_counter() - t0) * 1000


def run_prediction(
    image_path: str | Path | None,
    model: str,
    camera: CameraHint,
    settings: Settings,
    *,
    predict_fn: PredictFn = predict_images,
    progress: Progress = _noop,
    name: str | None = None,
) -> StudioState:
    """Decode the photo and predict its depth with ``model``."""
    if not model:
        raise InputError("Choose a model first.")
    progress(0.05, "Reading the photo")
    image, decode_ms = decode_photo(image_path, settings, name)
    progress(0.15, f"Running {model}")
    result = predict_fn([image], model, camera=camera, settings=settings)[0]
    result.timings_ms["decode"] = decode_ms
    return StudioState(rgb=image.rgb, native=result, stem=photo_stem(image_path, name))


def photo_stem(image_path: str | Path, name: str | None = None) -> str:
    """A safe file stem for outputs named after the photo."""
    import re

    stem = Path(name or Path(image_path).name).stem
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._")[:80] or "image"


def render(
    state: StudioState,
    out_dir: Path,
    *,
    cmap: str = "turbo",
    inverse: bool = True,
    figure: bool = True,
    progress: Progress = _noop,
) -> StudioView:
    """Slider pictures, the 3D figure, mesh files, raw exports, normals and the info panel.

    Files go to ``out_dir``: ``<stem>.npy/.png/_color.png/.json`` (the CLI's contract, see
    :mod:`depthweb.services.export`), then ``<stem>.glb`` and ``<stem>.ply``.
    """
    result = state.current
    timings = dict(result.timings_ms)
    progress(0.6, "Building the 3D view")
    t0 = time.perf_counter()
    shape = visuals.shape_depth(result)
    title = result.model + (" (aligned to anchors)" if state.aligned is not None else "")
    fig = visuals.mesh_figure(shape, state.rgb, result, title) if figure else None
    t1 = time.perf_counter()
    progress(0.75, "Writing the downloads")
    extra = {"input": state.stem}
    if state.alignment:
        extra["alignment"] = state.alignment
    files = write_outputs(result, out_dir, state.stem, cmap=cmap, extra=extra)
    mesh_files = visuals.write_mesh_files(shape, state.rgb, result, out_dir, state.stem)
    t2 = time.perf_counter()
    progress(0.9, "Drawing the pictures")
    normals, normals_note = visuals.normals_picture(result, shape)
    colour = visuals.depth_preview(result, cmap, inverse)
    timings.update({"mesh_3d_view": (t1 - t0) * 1000, "export": (t2 - t1) * 1000})
    info = describe(state, shape, timings)
    info["files"] = [p.name for p in files + mesh_files]
    slider = (visuals.downscale(state.rgb, SLIDER_MAX_SIDE),
              visuals.downscale(colour, SLIDER_MAX_SIDE))
    return StudioView(slider, fig, mesh_files[0] if mesh_files else None,
                      files + mesh_files, normals, normals_note, info, state.stem)


def describe(state: StudioState, shape: visuals.ShapeDepth, timings: dict) -> dict:
    """The info panel as a JSON-ready dict (the result's metadata plus the 3D label)."""
    result = state.current
    info = result.metadata()
    info["timings_ms"] = {k: round(v, 1) for k, v in timings.items()}
    info["view_3d"] = shape.note or "metric (metres)"
    if state.aligned is not None:
        info["native_kind"] = str(state.native.kind)
        info["alignment"] = state.alignment
    return info


def info_markdown(info: dict) -> str:
    """A short human-readable table of :func:`describe`'s dict."""
    k = info["intrinsics"]
    note = f" ({k['note']})" if k.get("note") else ""
    rng, fov = info.get("depth_range"), info["fov_deg"]
    unit = info["unit"]
    rng_text = "none" if rng is None else f"{rng['min']:.4g} to {rng['max']:.4g} {unit}"
    timings = " · ".join(f"{name} {ms:.0f} ms" for name, ms in info["timings_ms"].items())
    rows = [
        ("Kind", f"{info['kind']} (unit: {unit})"),
        ("Intrinsics", f"fx {k['fx']:.1f}, fy {k['fy']:.1f}, cx {k['cx']:.1f}, "
                       f"cy {k['cy']:.1f} px"),
        ("Intrinsics source", f"{k['source']}{note}"),
        ("Field of view", f"{fov['horizontal']:.1f}° × {fov['vertical']:.1f}°"),
        ("Depth range", f"{rng_text} (valid {100 * info['valid_fraction']:.1f} %)"),
        ("3D view", info["view_3d"]),
        ("Timings", timings),
    ]
    if info.get("alignment"):
        a = info["alignment"]
        rows.insert(2, ("Aligned", f"{a['anchors']} anchor(s) in {a['space']} space: scale "
                                   f"{a['scale']:.4g}, shift {a['shift']:.4g}, "
                                   f"residual {a['residual_m']:.3g} m"))
    rows += [("Note", n) for n in info.get("notes", [])]
    body = "\n".join(f"| {a} | {b} |" for a, b in rows)
    return f"| Model | `{info['model']}` |\n|---|---|\n{body}"


# --------------------------------------------------------------------------- measure, anchors
def depth_at(result: DepthResult, u: float, v: float) -> float | None:
    """The value at pixel ``(u, v)`` (column, row), or ``None`` when invalid or outside."""
    col, row = round(float(u)), round(float(v))
    if not (0 <= row < result.height and 0 <= col < result.width):
        return None
    value = float(result.depth[row, col])
    return value if bool(result.valid_mask[row, col]) else None


def measure_text(state: StudioState) -> str:
    """Markdown for the measure panel: depth at each clicked point, 3D distance when metric."""
    result = state.current
    if not state.points:
        return "Click a point on the photo to read its depth; click a second one to measure."
    lines = []
    for letter, (u, v) in zip("AB", state.points, strict=False):
        value = depth_at(result, u, v)
        shown = "no valid depth" if value is None else f"{value:.4g} {result.unit}"
        lines.append(f"**{letter}** pixel ({u}, {v}): depth {shown}")
    if len(state.points) == 2:
        lines.append(_distance_line(state))
    return "  \n".join(lines)


def _distance_line(state: StudioState) -> str:
    from depthweb.geometry.backproject import point_distance

    result = state.current
    if not result.kind.is_metric:
        return ("**Distance**: needs metric depth. This model is relative: add scale anchors "
                "(points of known depth) and align first.")
    try:
        d = point_distance(result.depth, result.intrinsics, *state.points)
    except InputError as exc:
        return f"**Distance**: {exc}"
    src = result.intrinsics.source
    return f"**Distance A–B**: {d:.3f} m (3D, with {src} intrinsics)"


def add_point(points: Sequence[tuple[int, int]], u: int, v: int) -> list[tuple[int, int]]:
    """Measure clicks: a third click starts a new pair."""
    points = list(points)
    return [(u, v)] if len(points) >= 2 else [*points, (u, v)]


def align(state: StudioState, anchors: Sequence[tuple[float, float, float]]) -> StudioState:
    """A copy of ``state`` whose depth is aligned to metric ``anchors`` ``(u, v, depth_m)``.

    The fit happens in the model's native space (inverse depth for relative-disparity models);
    one anchor fits the scale only, two or more scale and shift.
    """
    from depthweb.geometry.align import align_to_anchors

    anchors = [(float(u), float(v), float(z)) for u, v, z in anchors]
    native = state.native
    fit = align_to_anchors(native.depth, native.kind, anchors)
    space = "inverse depth" if native.kind is DepthKind.RELATIVE_DISPARITY else "depth"
    report = {"anchors": len(anchors), "space": space, "scale": fit.scale, "shift": fit.shift,
              "residual_m": fit.residual_m, "points": [list(a) for a in anchors]}
    note = (f"aligned to {len(anchors)} metric anchor(s) in {space} space: scale "
            f"{fit.scale:.6g}, shift {fit.shift:.6g}, residual {fit.residual_m:.3g} m")
    aligned = replace(native, depth=fit.depth, kind=DepthKind.METRIC_DEPTH,
                      timings_ms=dict(native.timings_ms), notes=[*native.notes, note])
    return replace(state, aligned=aligned, alignment=report,
                   anchors=[(round(u), round(v), z) for u, v, z in anchors])


def parse_anchors(text: str | None) -> list[tuple[float, float, float]]:
    """Anchors from JSON text ``[[u, v, depth_m], ...]`` (the API's format); empty -> []."""
    if text is None or not str(text).strip():
        return []
    try:
        data = json.loads(text)
        anchors = [(float(a[0]), float(a[1]), float(a[2])) for a in data]
    except (ValueError, TypeError, IndexError, KeyError) as exc:
        raise InputError(
            "Anchors must be JSON like [[u, v, depth_m], ...] with pixel column u and row v."
        ) from exc
    if len(anchors) > MAX_ANCHORS:
        raise InputError(f"Give at most {MAX_ANCHORS} anchors (got {len(anchors)}).")
    for u, v, z in anchors:
        if not all(math.isfinite(x) for x in (u, v, z)) or z <= 0:
            raise InputError(f"Anchor [{u:g}, {v:g}, {z:g}] needs a finite pixel column and row "
                             "and a positive depth in metres.")
    return anchors
