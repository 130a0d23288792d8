"""Studio use case: a photo in, a depth map with its 3D view, exports, measurements and anchors.

The web app's predict tab and its ``predict`` API endpoint both go through here; the functions
take and return plain Python / numpy values (no gradio). Model calls go through ``predict_fn``
(default :func:`depthweb.services.predict.predict_images`) so the app can wrap them for a GPU
queue (``spaces.GPU`` on Hugging Face ZeroGPU).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
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
from depthweb.services.studio_points import (  # noqa: F401  (the Studio's public names)
    MAX_ANCHORS,
    add_point,
    align,
    depth_at,
    measure_text,
    parse_anchors,
)
from depthweb.types import DepthKind, DepthResult

log = logging.getLogger(__name__)

Progress = Callable[[float, str], None]
PredictFn = Callable[..., list[DepthResult]]
GLB_CAMERA = (90.0, 90.0, None)
"""``gr.Model3D`` camera ``(alpha, beta, radius)``: Babylon's orbit camera (right-handed, as
Gradio sets it up) at ``alpha = beta = 90`` deg sits on the +z side of the mesh's centre and
looks down -z, the optical axis of our GLB (camera frame turned 180 deg about x): 0 deg between
its view direction and the optical axis. The radius is left to the viewer's framing."""
SLIDER_MAX_SIDE = 1024
"""The slider shows at most this many pixels on the longer side (downloads are full size;
the slider is at most 520 px high on the page)."""


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
    cache: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def current(self) -> DepthResult:
        """The depth the views and measurements use: aligned if available, else native."""
        return self.aligned if self.aligned is not None else self.native

    def shape(self) -> visuals.ShapeDepth:
        """The 3D depth of :attr:`current` (computed once per result, then reused)."""
        cached = self.cache.get("shape")
        if cached is None or cached[0] is not self.current:
            cached = (self.current, visuals.shape_depth(self.current))
            self.cache["shape"] = cached
        return cached[1]


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


@dataclass
class FirstPicture:
    """What the Studio shows as soon as the model returns: slider, 3D figure, info panel.

    ``shape`` is the 3D depth the later steps (GLB, downloads) reuse.
    """

    slider: tuple[np.ndarray, np.ndarray]
    figure: object | None
    info: dict
    shape: visuals.ShapeDepth


def slider_pictures(state: StudioState, cmap: str = "turbo",
                    inverse: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(photo, colourised depth), both at most ``SLIDER_MAX_SIDE`` on the longer side.

    The depth is shrunk (nearest, no invented values) before it is coloured: the slider never
    needs more pixels than it shows.
    """
    result = state.current
    small = visuals.downscale(state.rgb, SLIDER_MAX_SIDE)
    h, w = small.shape[:2]
    if (h, w) != result.depth.shape:
        import cv2

        depth = cv2.resize(np.where(result.valid_mask, result.depth, np.nan).astype(np.float32),
                           (w, h), interpolation=cv2.INTER_NEAREST)
        result = replace(result, depth=depth, intrinsics=result.intrinsics.scaled(
            w / result.width, h / result.height))
    return small, visuals.depth_preview(result, cmap, inverse)


def figure_3d(state: StudioState):
    """The plotly 3D view of :attr:`StudioState.current` (camera at the photo's viewpoint)."""
    result = state.current
    title = result.model + (" (aligned to anchors)" if state.aligned is not None else "")
    return visuals.mesh_figure(state.shape(), state.rgb, result, title)


def first_picture(
    state: StudioState, *, cmap: str = "turbo", inverse: bool = True, figure: bool = True,
) -> FirstPicture:
    """Slider pictures, the plotly 3D view and the info panel; writes no file.

    ``info["timings_ms"]["first_picture"]`` is this step's time (server work after the model).
    """
    t0 = time.perf_counter()
    result = state.current
    shape = state.shape()
    fig = figure_3d(state) if figure else None
    slider = slider_pictures(state, cmap, inverse)
    timings = dict(result.timings_ms)
    timings["first_picture"] = (time.perf_counter() - t0) * 1000
    return FirstPicture(slider, fig, describe(state, shape, timings), shape)


def glb_file(state: StudioState, out_dir: Path) -> Path | None:
    """``<stem>.glb`` for the viewer (512x384 vertices, photo texture), alone; ``None`` when
    no surface is left."""
    files = visuals.write_mesh_files(state.shape(), state.rgb, state.current, out_dir, state.stem,
                                     formats=("glb",))
    return files[0] if files else None


def download_files(
    state: StudioState, out_dir: Path, *, cmap: str = "turbo",
) -> tuple[list[Path], np.ndarray, str]:
    """The raw exports (``.npy/.png/_color.png/.json``, see :mod:`depthweb.services.export`),
    ``<stem>.ply`` and ``<stem>_normals.png``; returns (files, normals picture, its note)."""
    result, shape = state.current, state.shape()
    extra = {"input": state.stem, "view_3d": shape.note or "metric (metres)",
             "shape_rule": shape.rule}
    if state.alignment:
        extra["alignment"] = state.alignment
    normals, note = visuals.normals_picture(result, shape)
    files = write_outputs(result, out_dir, state.stem, cmap=cmap, extra=extra,
                          more={"_normals.png": visuals.png_bytes(normals)})
    files += visuals.write_mesh_files(shape, state.rgb, result, out_dir, state.stem,
                                      formats=("ply",))
    return files, normals, note


def render(
    state: StudioState,
    out_dir: Path,
    *,
    cmap: str = "turbo",
    inverse: bool = True,
    figure: bool = True,
    progress: Progress = _noop,
) -> StudioView:
    """Everything at once (the ``/predict`` API and the CLI-like callers): the first picture,
    then the GLB, then the downloads (``<stem>.npy/.png/_color.png/.json/_normals.png/.ply``).
    """
    progress(0.6, "Building the 3D view")
    first = first_picture(state, cmap=cmap, inverse=inverse, figure=figure)
    progress(0.75, "Writing the downloads")
    t0 = time.perf_counter()
    glb = glb_file(state, out_dir)
    files, normals, note = download_files(state, out_dir, cmap=cmap)
    first.info["timings_ms"]["files"] = round((time.perf_counter() - t0) * 1000, 1)
    files = files + ([glb] if glb else [])
    first.info["files"] = [p.name for p in files]
    return StudioView(first.slider, first.figure, glb, files, normals, note, first.info,
                      state.stem)


def describe(state: StudioState, shape: visuals.ShapeDepth, timings: dict) -> dict:
    """The info panel as a JSON-ready dict (the result's metadata plus the 3D label)."""
    result = state.current
    info = result.metadata()
    info["timings_ms"] = {k: round(v, 1) for k, v in timings.items()}
    info["view_3d"] = shape.note or "metric (metres)"
    info["shape_rule"] = shape.rule
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
        rows.insert(2, ("Aligned", f"{a['anchors']} anchor(s) in {a['space']} space, "
                                   f"{a['determined']} fitted: scale {a['scale']:.4g}, "
                                   f"shift {a['shift']:.4g}; residual {a['residual']}"))
    rows += [("Note", n) for n in info.get("notes", [])]
    body = "\n".join(f"| {a} | {b} |" for a, b in rows)
    return f"| Model | `{info['model']}` |\n|---|---|\n{body}"
