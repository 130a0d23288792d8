"""Video use case: a clip in, temporally stable depth out (CLI, Studio tab, ``/video`` API).

:func:`process_video` decodes the clip (:mod:`depthweb.services.video_io`), runs the model on
the frames in batches (:func:`predict_clip`, the one call that needs the accelerator), stabilises
the sequence over time (:mod:`depthweb.geometry.temporal`) and writes, all or nothing
(:func:`depthweb.fsutil.atomic_write_files`):

- ``<stem>_depth.webm``: side-by-side video, photo | colourised depth (VP9, one colour scale for
  the whole clip: the 2-98 % range of every frame's inverse depth, near is warm);
- ``<stem>_depth.npz``: ``depth`` (T, H, W) float16 (NaN = invalid) in the model's kind and
  unit, ``times`` (T,) seconds, ``scale``/``shift`` (T,) applied by the stabiliser;
- ``<stem>_depth.json``: the image sidecar (model, kind, unit, intrinsics, ...) plus ``fps``,
  ``frame_count``, the source's facts and the stabilisation settings and per-frame fits;
- optionally ``<stem>_frame<k>.ply``: the point cloud of frame ``k`` (relative depth: shape
  only, unknown scale, as the sidecar says).
"""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from depthweb.config import Settings, get_settings
from depthweb.errors import InputError
from depthweb.fsutil import atomic_write_files
from depthweb.geometry.temporal import FrameFit, StabiliseConfig, scene_cuts, stabilise_sequence
from depthweb.services.video_io import DecodedVideo, decode_video, encode_webm, even_pad
from depthweb.types import DepthKind, DepthResult

log = logging.getLogger(__name__)

Progress = Callable[[float, str], None]
BATCH_FRAMES = 8


@dataclass
class VideoResult:
    """Everything one run produced: stabilised ``depth`` (T, H, W) float32 (NaN invalid),
    ``rgb`` (T, H, W, 3) uint8, the per-frame ``fits``, the ``sidecar`` dict and written files."""

    depth: np.ndarray
    rgb: np.ndarray
    kind: DepthKind
    template: DepthResult
    fps: float
    fits: list[FrameFit]
    sidecar: dict
    files: list[Path] = field(default_factory=list)

    def frame_result(self, k: int) -> DepthResult:
        """Frame ``k`` as a :class:`DepthResult` (for the 3D view and exports)."""
        t = self.template
        return DepthResult(depth=self.depth[k], kind=t.kind, intrinsics=t.intrinsics,
                           model=t.model, weights=t.weights, notes=list(t.notes))

    def file(self, suffix: str) -> Path | None:
        return next((f for f in self.files if f.name.endswith(suffix)), None)


def predict_clip(
    frames: np.ndarray, model: str, *, progress: Progress | None = None,
    batch: int = BATCH_FRAMES, predict_fn: Callable | None = None, **kwargs,
) -> list[DepthResult]:
    """Per-frame depth of ``frames`` (T, H, W, 3) uint8, ``batch`` frames per model call.

    ``kwargs`` go to :func:`depthweb.services.predict.predict_images` (weights, device,
    camera, settings).
    """
    if predict_fn is None:
        from depthweb.services.predict import predict_images as predict_fn
    results: list[DepthResult] = []
    for start in range(0, len(frames), batch):
        results += predict_fn(list(frames[start:start + batch]), model, **kwargs)
        if progress:
            done = min(start + batch, len(frames))
            progress(done / len(frames), f"depth of frame {done}/{len(frames)}")
    return results


def _grey_small(frames: np.ndarray, side: int = 64) -> np.ndarray:
    """(T, h, w) float grey thumbnails in [0, 1] for scene-cut detection."""
    import cv2

    h, w = frames.shape[1:3]
    s = side / max(h, w)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    return np.stack([cv2.resize(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), size,
                                interpolation=cv2.INTER_AREA) for f in frames]) / 255.0


def stabilise(results: Sequence[DepthResult], rgb: np.ndarray,
              config: StabiliseConfig | None = None) -> tuple[np.ndarray, list[FrameFit]]:
    """Stabilised (T, H, W) float32 (NaN invalid) of per-frame results, cuts found in ``rgb``."""
    preds = np.stack([r.depth for r in results])
    valid = np.stack([r.valid_mask for r in results])
    out, fits = stabilise_sequence(preds, valid, results[0].kind, config,
                                   cuts=scene_cuts(_grey_small(rgb)))
    return np.where(valid, out, np.nan).astype(np.float32), fits


def inverse_values(depth: np.ndarray, kind: DepthKind) -> np.ndarray:
    """Disparity-like values (near = large) for colouring: native for relative disparity,
    ``1 / depth`` otherwise; NaN where invalid."""
    if kind is DepthKind.RELATIVE_DISPARITY:
        return depth
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(np.isfinite(depth) & (depth > 0), 1.0 / depth, np.nan)


def clip_colour_range(depth: np.ndarray, kind: DepthKind) -> tuple[float, float]:
    """One (low, high) for the whole clip: 2-98 % of every frame's inverse depth."""
    values = inverse_values(depth[:, ::4, ::4], kind)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(values, [2, 98])
    return float(lo), float(hi if hi > lo else lo + 1.0)


def side_by_side(rgb: np.ndarray, depth: np.ndarray, kind: DepthKind, cmap: str = "turbo"
                 ) -> tuple[np.ndarray, tuple[float, float]]:
    """(T, H, 2W, 3) uint8 frames photo | colour depth (even size) and the colour range."""
    from depthweb.geometry.colormap import colorize

    rng = clip_colour_range(depth, kind)
    frames = [even_pad(np.concatenate([im, colorize(inverse_values(d, kind), cmap=cmap,
                                                    invert=True, value_range=rng)], axis=1))
              for im, d in zip(rgb, depth, strict=True)]
    return np.stack(frames), rng


def safe_stem(name: str) -> str:
    """A file-name stem from a user's file name: letters, digits, ``-`` and ``_`` only."""
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", Path(name).stem).strip("_")[:60]
    return stem or "video"


def process_video(
    path: str | Path,
    model: str,
    out_dir: str | Path,
    *,
    max_frames: int | None = None,
    stride: int = 1,
    max_side: int | None = None,
    cloud_frame: int | None = None,
    cmap: str = "turbo",
    stabilise_config: StabiliseConfig | None = None,
    settings: Settings | None = None,
    predict_fn: Callable | None = None,
    progress: Progress | None = None,
    **model_kwargs,
) -> VideoResult:
    """Decode, predict, stabilise and write the outputs of one clip (module docstring).

    ``predict_fn(frames, model, progress=..., **model_kwargs)`` defaults to
    :func:`predict_clip` (the app passes its ``spaces.GPU``-wrapped version).
    """
    settings = settings or get_settings()
    report = progress or (lambda f, d: None)
    report(0.0, "decoding the video")
    clip = decode_video(path, max_frames=max_frames, stride=stride, max_side=max_side,
                        settings=settings)
    if cloud_frame is not None and not 0 <= cloud_frame < len(clip):
        raise InputError(f"The point-cloud frame must be between 0 and {len(clip) - 1}; "
                         f"got {cloud_frame}.")
    run = predict_fn or predict_clip
    results = run(clip.frames, model, settings=settings,
                  progress=lambda f, d: report(0.05 + 0.75 * f, d), **model_kwargs)
    report(0.8, "stabilising over time")
    depth, fits = stabilise(results, clip.frames, stabilise_config)
    result = VideoResult(depth, clip.frames, results[0].kind, results[0], clip.fps, fits, {})
    report(0.85, "encoding the side-by-side video")
    blobs = encode_outputs(result, clip, stabilise_config or StabiliseConfig(), cmap,
                           cloud_frame)
    stem = safe_stem(Path(path).name)
    files = {Path(out_dir) / f"{stem}{suffix}": data for suffix, data in blobs.items()}
    atomic_write_files(files)
    result.files = list(files)
    report(1.0, "done")
    return result


def encode_outputs(result: VideoResult, clip: DecodedVideo, config: StabiliseConfig,
                   cmap: str, cloud_frame: int | None) -> dict[str, bytes]:
    """Suffix -> bytes of every output file (nothing written yet)."""
    frames, colour_range = side_by_side(result.rgb, result.depth, result.kind, cmap)
    buf = io.BytesIO()
    np.savez_compressed(buf, depth=result.depth.astype(np.float16),
                        times=clip.times.astype(np.float32),
                        scale=np.array([f.scale for f in result.fits], np.float32),
                        shift=np.array([f.shift for f in result.fits], np.float32))
    meta = result.template.metadata()
    finite = result.depth[np.isfinite(result.depth)]
    meta.update(
        depth_range=None if finite.size == 0 else {"min": float(finite.min()),
                                                   "max": float(finite.max())},
        fps=round(result.fps, 6), frame_count=len(result.depth), source=clip.source,
        npz={"depth": "float16 (T, H, W), NaN = invalid", "times": "seconds",
             "scale": "applied scale per frame", "shift": "applied shift per frame"},
        colour_range={"values": "inverse depth", "low": colour_range[0],
                      "high": colour_range[1]},
        stabilisation={**vars(config), "space": "disparity" if result.kind
                       is DepthKind.RELATIVE_DISPARITY else "depth",
                       "frames": [f.as_dict() for f in result.fits]},
        video={"file": "side-by-side photo | depth", "codec": "vp9", "container": "webm"})
    meta.pop("timings_ms", None)
    blobs = {"_depth.webm": encode_webm(frames, result.fps), "_depth.npz": buf.getvalue()}
    if cloud_frame is not None:
        blobs[f"_frame{cloud_frame}.ply"] = point_cloud_ply(result, cloud_frame)
        meta["point_cloud"] = {"frame": cloud_frame, "file": f"_frame{cloud_frame}.ply"}
    blobs["_depth.json"] = json.dumps(meta, indent=2).encode()
    return blobs


def point_cloud_ply(result: VideoResult, k: int) -> bytes:
    """PLY bytes of frame ``k``'s coloured points (relative depth: shape only)."""
    import trimesh

    from depthweb.geometry.backproject import backproject
    from depthweb.services.visuals import shape_depth

    shape = shape_depth(result.frame_result(k))
    points = backproject(shape.depth, result.template.intrinsics)
    ok = np.isfinite(points[..., 2])
    cloud = trimesh.PointCloud(points[ok], colors=result.rgb[k][ok])
    return cloud.export(file_type="ply")


def preview(result: VideoResult, max_side: int = 256) -> VideoResult:
    """A smaller copy for the app's frame viewer (kept per session): frames downscaled to
    ``max_side``, depth nearest-sampled as float16, intrinsics scaled to match."""
    import cv2

    h, w = result.depth.shape[1:]
    s = min(1.0, max_side / max(h, w))
    size = (max(2, round(w * s)), max(2, round(h * s)))
    rgb = np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in result.rgb])
    depth = np.stack([cv2.resize(d, size, interpolation=cv2.INTER_NEAREST)
                      for d in result.depth]).astype(np.float16)
    t = result.template
    template = DepthResult(depth=depth[0].astype(np.float32), kind=t.kind,
                           intrinsics=t.intrinsics.scaled(size[0] / w, size[1] / h),
                           model=t.model, weights=t.weights, notes=list(t.notes))
    return VideoResult(depth, rgb, result.kind, template, result.fps, result.fits,
                       result.sidecar, list(result.files))


def frame_figure(result: VideoResult, k: int):
    """Plotly 3D view of frame ``k`` (relative depth: shape only, unknown scale)."""
    from depthweb.services.visuals import mesh_figure, shape_depth

    k = int(np.clip(k, 0, len(result.depth) - 1))
    frame = result.frame_result(k)
    frame.depth = frame.depth.astype(np.float32)
    return mesh_figure(shape_depth(frame), result.rgb[k], frame,
                       f"Frame {k} of {len(result.depth)} ({result.kind})")


def summary_markdown(result: VideoResult) -> str:
    """A few lines for the app: frames, rate, kind, segments, source facts."""
    meta = json.loads(result.file("_depth.json").read_bytes()) if result.file(
        "_depth.json") else {}
    src = meta.get("source", {})
    resets = sum(f.reset for f in result.fits)
    sigma = meta.get("stabilisation", {}).get("window_sigma")
    smoothing = f"; centred smoothing over ±{2 * sigma:g} frames" if sigma else ""
    rows = [("Frames", f"{len(result.depth)} at {result.fps:.3g} fps"),
            ("Kind", f"{result.kind} (unit: {result.kind.unit})"),
            ("Stabilisation", f"{resets} segment(s); scale/shift per frame in the .json"
                              + smoothing),
            ("Source", f"{src.get('codec', '?')} {src.get('width', '?')}x"
                       f"{src.get('height', '?')}, rotation {src.get('rotation', 0)}°, "
                       f"{'variable' if src.get('variable_frame_rate') else 'constant'} "
                       "frame rate")]
    return "| Clip | |\n|---|---|\n" + "\n".join(f"| {a} | {b} |" for a, b in rows)
