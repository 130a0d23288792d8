"""Stereo use case: a pair + calibration in, disparity, depth, the rectified pair and a 3D view out.

Three ways in (:func:`calibration` picks one, :func:`compute_stereo` runs it):

- an already rectified pair with a Middlebury ``calib.txt`` or focal / baseline / doffs
  (:class:`~depthweb.models.stereo.StereoCalib`): matched as is; matched features that are off
  their rows add a note suggesting rectification;
- a two-camera calibration (OpenCV YAML ``K1 D1 K2 D2 R T`` or KITTI ``calib_cam_to_cam.txt``,
  :class:`~depthweb.models.rigcalib.RigCalib`): rectified, metric depth;
- :class:`Uncalibrated`: rectified from features (essential matrix with a focal length: depth
  up to one scale, metric with a baseline; fundamental matrix without one: disparity only).

When a mono model is chosen, its prediction is aligned to the stereo depth on the confident
stereo pixels (those that passed SGBM's filters and the left-right check), by trimmed least
squares in the mono model's native space, and fills the stereo holes: the fused depth is the
stereo depth where it is valid and the aligned mono depth elsewhere.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from depthweb.config import Settings
from depthweb.errors import DepthwebError, InputError
from depthweb.geometry.align import fit_scale_shift
from depthweb.geometry.backproject import depth_to_disparity, disparity_to_depth
from depthweb.services import visuals
from depthweb.services.export import npy_bytes, write_outputs
from depthweb.services.predict import CameraHint
from depthweb.services.studio import PredictFn, Progress, _noop, decode_photo, photo_stem
from depthweb.types import DepthKind, DepthResult, Intrinsics, IntrinsicsSource

if TYPE_CHECKING:
    from depthweb.imaging import LoadedImage
    from depthweb.models.stereo import StereoResult

log = logging.getLogger(__name__)

TRIM = 0.1
GUIDE_LINES = 16


@dataclass(frozen=True)
class Uncalibrated:
    """Rectify from matched features. ``focal_px``: the focal length if known (else EXIF, else
    the assumed FOV); ``use_focal=False``: no usable focal (fundamental matrix, disparity only);
    ``baseline_m``: the camera distance, when known, for metric depth."""

    focal_px: float | None = None
    baseline_m: float | None = None
    use_focal: bool = True
    name: str = "rectified from features"


@dataclass
class StereoOutcome:
    """Stereo results; arrays (H, W) of the left image.

    ``stereo``: depth (NaN holes; metric, or up to scale / disparity only when rectified from
    features, as its ``kind`` says); ``disparity``: pixels, NaN invalid; ``mono``: the mono
    model's prediction aligned to the stereo depth (or ``None``); ``fused``: stereo with mono in
    the holes (or ``None``); ``info``: JSON-ready summary; ``pair_picture``: the (rectified)
    pair side by side with horizontal guide lines, uint8 (H, 2W, 3).
    """

    rgb: np.ndarray
    stereo: DepthResult
    disparity: np.ndarray
    mono: DepthResult | None
    fused: DepthResult | None
    figure: object | None
    files: list[Path]
    info: dict
    pair_picture: np.ndarray | None = None

    @property
    def shown(self) -> DepthResult:
        """The depth the 3D view and the depth picture use."""
        return self.fused if self.fused is not None else self.stereo


def calibration(
    calib_path: str | Path | None,
    focal_px: float | None,
    baseline_m: float | None,
    doffs: float | None,
    *,
    rectify: bool = False,
    use_focal: bool = True,
):
    """What to do with the pair: a two-camera calibration file (OpenCV YAML / KITTI, recognised
    by its content) -> ``RigCalib``; a Middlebury ``calib.txt`` or focal / baseline / doffs ->
    ``StereoCalib`` (an already rectified pair); ``rectify`` without a file -> ``Uncalibrated``."""
    from depthweb.models.rigcalib import load_rig, looks_like_rig
    from depthweb.models.stereo import StereoCalib

    if calib_path:
        path = Path(calib_path)
        try:
            head = path.read_bytes()[:65536].decode("utf-8", errors="replace")
        except OSError as exc:
            raise InputError(f"{path.name} cannot be read: {exc.strerror or exc}.") from exc
        if looks_like_rig(head, path.suffix):
            return load_rig(path)
        return StereoCalib.from_middlebury(path)
    if rectify:
        for label, v in (("focal length", focal_px), ("baseline", baseline_m)):
            if v is not None and not (np.isfinite(v) and v > 0):
                raise InputError(f"The {label} must be a positive number, got {v}.")
        return Uncalibrated(focal_px or None, baseline_m or None, use_focal)
    if not focal_px or not baseline_m:
        raise InputError("Upload a calib.txt, or enter the focal length (px) and the baseline "
                         "(m) of the stereo camera.")
    return StereoCalib.from_values(float(focal_px), float(baseline_m), float(doffs or 0.0))


def fuse_mono(stereo: DepthResult, mono: DepthResult) -> tuple[DepthResult, DepthResult, dict]:
    """Align ``mono`` to ``stereo`` on the valid stereo pixels; returns (aligned, fused, stats)."""
    confident = stereo.valid_mask
    if confident.sum() < 2:
        raise InputError("Stereo matching found too few valid pixels to align the mono model.")
    inverse = mono.kind is DepthKind.RELATIVE_DISPARITY
    target = depth_to_disparity(stereo.depth) if inverse else stereo.depth
    pred = np.where(mono.valid_mask, mono.depth, np.nan)
    try:
        scale, shift = fit_scale_shift(pred, target, confident, trim=TRIM)
    except ValueError as exc:
        raise InputError(f"{mono.model} predicts a constant map here and cannot be aligned "
                         "to the stereo depth.") from exc
    fitted = scale * pred.astype(np.float64) + shift
    aligned = disparity_to_depth(fitted) if inverse else np.where(fitted > 0, fitted, np.nan)
    aligned = aligned.astype(np.float32)
    fused = np.where(confident, stereo.depth, aligned).astype(np.float32)
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = np.abs(aligned - stereo.depth) / stereo.depth
    ok = confident & np.isfinite(rel)
    holes = ~confident
    stats = {
        "model": mono.model, "space": "inverse depth" if inverse else "depth",
        "scale": float(scale), "shift": float(shift),
        "abs_rel_vs_stereo": float(np.mean(rel[ok])) if ok.any() else float("nan"),
        "stereo_valid_fraction": float(confident.mean()),
        "holes_filled_fraction": float((holes & np.isfinite(aligned)).sum() / max(holes.sum(), 1)),
    }
    note = (f"{mono.model} aligned to stereo on {int(confident.sum())} confident pixels "
            f"({stats['space']} space, scale {scale:.4g}, shift {shift:.4g})")
    mono_metric = replace(mono, depth=aligned, kind=stereo.kind,
                          intrinsics=stereo.intrinsics, notes=[*mono.notes, note])
    fused_result = replace(stereo, depth=fused, model=f"{stereo.model}+{mono.model}",
                           notes=[*stereo.notes, f"holes filled by {note}"])
    return mono_metric, fused_result, stats


@dataclass
class StereoComputed:
    """:func:`compute_stereo`'s answer: the model result, the rectified pair shown with guide
    lines (uint8 (H, 2W, 3)), the rectification summary (``None`` for a rectified input) and
    the calibration summary for the info panel."""

    result: StereoResult
    pair_picture: np.ndarray
    rectification: dict | None
    calibration: dict


def guide_lines(left: np.ndarray, right: np.ndarray, lines: int = GUIDE_LINES) -> np.ndarray:
    """The two views side by side, uint8 (H, 2W, 3), with ``lines`` horizontal guide lines so a
    person can see whether rows correspond."""
    import cv2

    pair = np.hstack([left, right])  # uint8 (H, W, 3) each
    h, w2 = pair.shape[:2]
    for i in range(1, lines + 1):
        y = round(i * h / (lines + 1))
        cv2.line(pair, (0, y), (w2 - 1, y), (0, 255, 0) if i % 2 else (255, 0, 255), 1)
    return pair


def compute_stereo(left: LoadedImage, right: LoadedImage, calib, settings: Settings
                   ) -> StereoComputed:
    """Disparity and depth of the left view for any of :func:`calibration`'s answers; the
    stereo cost cap (``settings.stereo_max_cost``) is checked before matching, after
    rectification where there is one."""
    from depthweb.models.rectify import rectify_calibrated, rectify_uncalibrated
    from depthweb.models.rigcalib import RigCalib
    from depthweb.models.stereo import stereo_depth
    from depthweb.models.stereo_rectified import stereo_unrectified

    cap = settings.stereo_max_cost or None
    if not isinstance(calib, (RigCalib, Uncalibrated)):
        out = stereo_depth(left, right, calib, max_cost=cap)
        info = {"focal_px": calib.focal_px, "baseline_m": calib.baseline_m,
                "doffs_px": calib.doffs_px, "source": calib.name}
        return StereoComputed(out, guide_lines(left.rgb, right.rgb), None, info)
    if left.rgb.shape != right.rgb.shape:
        (h, w), (hr, wr) = left.rgb.shape[:2], right.rgb.shape[:2]
        raise InputError(f"The left image {left.name} is {w}x{h} but the right image "
                         f"{right.name} is {wr}x{hr}: both photos must have the same size.")
    h, w = left.rgb.shape[:2]
    baseline = calib.baseline_m
    if isinstance(calib, RigCalib):
        rect = rectify_calibrated(left.rgb, right.rgb, calib)
        k = calib.k1
        intr = Intrinsics(float(k[0, 0]), float(k[1, 1]), float(k[0, 2]), float(k[1, 2]),
                          IntrinsicsSource.CALIB, f"left camera of {calib.name}")
        baseline = None  # the calibrated path is metric already
    else:
        intr = CameraHint(focal_px=calib.focal_px).intrinsics_for(left, settings)
        rect = rectify_uncalibrated(left.rgb, right.rgb, intr.fx if calib.use_focal else None,
                                    fallback_fov_deg=settings.default_fov_deg)
        if rect.method == "fundamental":
            intr = Intrinsics.from_fov(w, h, settings.default_fov_deg)
    out, (rect_l, rect_r) = stereo_unrectified(left.rgb, right.rgb, rect, intr,
                                               baseline_m=baseline, max_cost=cap)
    info = {"focal_px": intr.fx if rect.method != "fundamental" else None,
            "baseline_m": calib.baseline_m, "doffs_px": 0.0, "source": calib.name}
    return StereoComputed(out, guide_lines(rect_l, rect_r), rect.info(), info)


def _mono_fill(stereo: DepthResult, left: LoadedImage, mono_model: str, predict_fn: PredictFn,
               settings: Settings) -> tuple[DepthResult, DepthResult, dict]:
    """Run ``mono_model`` on the left view and :func:`fuse_mono` it with ``stereo``."""
    if stereo.kind is DepthKind.RELATIVE_DISPARITY:
        raise InputError("This pair gives disparity only (no usable focal length), so a "
                         "mono model cannot be aligned to it: give a focal length or "
                         "choose no mono model.")
    h, w = left.rgb.shape[:2]
    camera = CameraHint(focal_px=stereo.intrinsics.fx)
    raw = predict_fn([left], mono_model, camera=camera, settings=settings)[0]
    if raw.depth.shape != (h, w):
        raise DepthwebError(f"{mono_model} returned {raw.depth.shape}, expected {(h, w)}.")
    return fuse_mono(stereo, raw)


def run_stereo(
    left_path: str | Path | None,
    right_path: str | Path | None,
    calib,
    settings: Settings,
    out_dir: Path,
    *,
    mono_model: str | None = None,
    predict_fn: PredictFn,
    progress: Progress = _noop,
    names: tuple[str | None, str | None] = (None, None),
) -> StereoOutcome:
    """Stereo depth of the left image (and the mono fill when ``mono_model`` is given)."""
    if not left_path or not right_path:
        raise InputError("Upload both images of the pair (left and right).")
    progress(0.05, "Reading the pair")
    left, _ = decode_photo(left_path, settings, names[0])
    right, _ = decode_photo(right_path, settings, names[1])
    progress(0.15, "Rectifying and matching (OpenCV)")
    try:
        computed = compute_stereo(left, right, calib, settings)
    except ValueError as exc:
        raise DepthwebError(f"Stereo matching failed: {exc}.") from exc
    out = computed.result
    stereo, mono, fused, fill = out.depth, None, None, None
    if mono_model:
        progress(0.55, f"Running {mono_model}")
        mono, fused, fill = _mono_fill(stereo, left, mono_model, predict_fn, settings)
    progress(0.75, "Building the 3D view and files")
    stem = photo_stem(left_path, names[0])
    shown = fused if fused is not None else stereo
    t0 = time.perf_counter()
    shape = visuals.shape_depth(shown)
    figure = visuals.mesh_figure(shape, left.rgb, shown, f"{shown.model}")
    files = write_outputs(stereo, out_dir, stem, extra={"input": [left.name, right.name]},
                          more={"_disparity.npy": npy_bytes(out.disparity)})
    if fused is not None:
        files += write_outputs(fused, out_dir, f"{stem}_fused")[:1]
    files += visuals.write_mesh_files(shape, left.rgb, shown, out_dir, stem)
    info = stereo.metadata()
    info["calibration"] = computed.calibration
    info["rectification"] = computed.rectification
    info["notes"] = list(stereo.notes)
    info["timings_ms"]["views_and_files"] = round((time.perf_counter() - t0) * 1000, 1)
    info["mono_fill"] = fill
    info["files"] = [p.name for p in files]
    return StereoOutcome(left.rgb, stereo, out.disparity, mono, fused, figure, files, info,
                         computed.pair_picture)


def probe(outcome: StereoOutcome, u: float, v: float) -> dict:
    """Values at pixel ``(u, v)``: stereo depth (m), disparity (px), mono and fused depth (m)."""
    col, row = round(float(u)), round(float(v))
    h, w = outcome.disparity.shape
    if not (0 <= col < w and 0 <= row < h):
        raise InputError(f"Pixel ({col}, {row}) is outside the {w}x{h} image.")

    def val(a: np.ndarray | None) -> float | None:
        if a is None:
            return None
        x = float(a[row, col])
        return x if np.isfinite(x) else None

    return {
        "pixel": [col, row], "stereo_depth_m": val(outcome.stereo.depth),
        "disparity_px": val(outcome.disparity),
        "mono_depth_m": val(outcome.mono.depth if outcome.mono is not None else None),
        "fused_depth_m": val(outcome.fused.depth if outcome.fused is not None else None),
    }
