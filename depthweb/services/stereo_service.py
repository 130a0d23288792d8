"""Stereo use case: a rectified pair + calibration in, disparity, metric depth and a 3D view out.

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

import numpy as np

from depthweb.config import Settings
from depthweb.errors import DepthwebError, InputError
from depthweb.geometry.align import fit_scale_shift
from depthweb.geometry.backproject import depth_to_disparity, disparity_to_depth
from depthweb.services import visuals
from depthweb.services.export import npy_bytes, write_outputs
from depthweb.services.predict import CameraHint
from depthweb.services.studio import PredictFn, Progress, _noop, decode_photo, photo_stem
from depthweb.types import DepthKind, DepthResult

log = logging.getLogger(__name__)

TRIM = 0.1


@dataclass
class StereoOutcome:
    """Stereo results; arrays (H, W) of the left image.

    ``stereo``: metric depth (NaN holes); ``disparity``: pixels, NaN invalid; ``mono``: the
    mono model's prediction aligned to metres (or ``None``); ``fused``: stereo with mono in
    the holes (or ``None``); ``info``: JSON-ready summary.
    """

    rgb: np.ndarray
    stereo: DepthResult
    disparity: np.ndarray
    mono: DepthResult | None
    fused: DepthResult | None
    figure: object | None
    files: list[Path]
    info: dict

    @property
    def shown(self) -> DepthResult:
        """The depth the 3D view and the depth picture use."""
        return self.fused if self.fused is not None else self.stereo


def calibration(
    calib_path: str | Path | None,
    focal_px: float | None,
    baseline_m: float | None,
    doffs: float | None,
):
    """A ``StereoCalib`` from a Middlebury ``calib.txt`` or from focal / baseline / doffs."""
    from depthweb.models.stereo import StereoCalib

    if calib_path:
        return StereoCalib.from_middlebury(calib_path)
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
    mono_metric = replace(mono, depth=aligned, kind=DepthKind.METRIC_DEPTH,
                          intrinsics=stereo.intrinsics, notes=[*mono.notes, note])
    fused_result = replace(stereo, depth=fused, model=f"{stereo.model}+{mono.model}",
                           notes=[*stereo.notes, f"holes filled by {note}"])
    return mono_metric, fused_result, stats


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
    from depthweb.models.stereo import stereo_depth

    if not left_path or not right_path:
        raise InputError("Upload both images of the rectified pair (left and right).")
    progress(0.05, "Reading the pair")
    left, _ = decode_photo(left_path, settings, names[0])
    right, _ = decode_photo(right_path, settings, names[1])
    progress(0.15, "Matching (OpenCV SGBM)")
    try:
        out = stereo_depth(left, right, calib)
    except ValueError as exc:
        raise DepthwebError(f"Stereo matching failed: {exc}.") from exc
    stereo, mono, fused, fill = out.depth, None, None, None
    if mono_model:
        progress(0.55, f"Running {mono_model}")
        h, w = left.rgb.shape[:2]
        camera = CameraHint(focal_px=stereo.intrinsics.fx)
        raw = predict_fn([left], mono_model, camera=camera, settings=settings)[0]
        if raw.depth.shape != (h, w):
            raise DepthwebError(f"{mono_model} returned {raw.depth.shape}, expected {(h, w)}.")
        mono, fused, fill = fuse_mono(stereo, raw)
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
    info["calibration"] = {"focal_px": calib.focal_px, "baseline_m": calib.baseline_m,
                           "doffs_px": calib.doffs_px, "source": calib.name}
    info["timings_ms"]["views_and_files"] = round((time.perf_counter() - t0) * 1000, 1)
    info["mono_fill"] = fill
    info["files"] = [p.name for p in files]
    return StereoOutcome(left.rgb, stereo, out.disparity, mono, fused, figure, files, info)


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
