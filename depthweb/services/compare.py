"""Compare use case: 2-4 models on one photo, aligned to a reference, with an agreement map.

Models only agree up to what they promise: relative models up to scale and shift in their own
space. So every model is first aligned to the reference by least squares (trimmed, robust to
sky and edges) **in its native space** (inverse depth for relative-disparity models, depth
otherwise), then compared in the reference's space: depth when the reference gives depth,
inverse depth when the reference is a relative-disparity model.

The agreement map is, per pixel, the mean over the other models of
``|aligned - reference| / reference``; the summary gives per model the fitted scale and shift,
AbsRel (mean relative difference), median relative difference and delta1 (share of pixels
whose ratio to the reference is below 1.25).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from depthweb.config import Settings
from depthweb.errors import InputError
from depthweb.fsutil import atomic_write_bytes
from depthweb.geometry.align import fit_scale_shift
from depthweb.geometry.backproject import depth_to_disparity, disparity_to_depth
from depthweb.services import visuals
from depthweb.services.export import npy_bytes, write_outputs
from depthweb.services.studio import PredictFn, Progress, _noop, decode_photo, photo_stem
from depthweb.services.visuals import png_bytes
from depthweb.types import DepthKind, DepthResult

log = logging.getLogger(__name__)

MIN_MODELS, MAX_MODELS = 2, 4
TRIM = 0.1
"""Share of the largest residuals ignored by the alignment fit."""
AGREEMENT_RANGE = (0.0, 0.25)
"""Relative differences coloured from "agree" (0) to "disagree" (25 % or more)."""


@dataclass
class CompareOutcome:
    """Results of a comparison; arrays are (H, W) at the photo's resolution.

    ``agreement``: float32 mean relative difference to the reference, NaN where undefined.
    ``summary``: JSON-ready dict (reference, space, per-model rows). ``previews``: one
    colourised picture per model, in ``results`` order.
    """

    rgb: np.ndarray
    results: list[DepthResult]
    reference: str
    agreement: np.ndarray
    agreement_rgb: np.ndarray
    previews: list[np.ndarray]
    summary: dict
    files: list[Path]


def availability_line(available: list[str]) -> str:
    """One line saying what Compare needs when fewer than two models are usable here."""
    if len(available) >= MIN_MODELS:
        return ""
    have = (f"only `{available[0]}` is on this machine" if available
            else "no model is on this machine")
    return (f"Compare needs at least {MIN_MODELS} models with local weights; {have}. "
            "Download another with `depthweb download NAME` (e.g. depth-anything-v2-small) "
            "and restart the app.")


def request_problem(image: object, names: list[str] | None, available: list[str]) -> str | None:
    """The one-line reason a Compare click cannot run (``None`` when it can)."""
    if len(available) < MIN_MODELS:
        return availability_line(available)
    chosen = list(dict.fromkeys(n for n in (names or []) if n))
    if not MIN_MODELS <= len(chosen) <= MAX_MODELS:
        return f"Choose {MIN_MODELS} to {MAX_MODELS} different models, then click Compare."
    missing = [n for n in chosen if n not in available]
    if missing:
        return (f"`{missing[0]}` has no weights on this machine; choose models marked "
                "\"local\".")
    if not image:
        return "Upload a photo (or click an example) first."
    return None


def checked_models(models: list[str] | str | None, reference: str | None) -> tuple[list, str]:
    """Deduplicated model names (2-4) and the reference (default: the first)."""
    if isinstance(models, str):
        models = [m.strip() for m in models.split(",")]
    names = list(dict.fromkeys(m for m in (models or []) if m))
    if not MIN_MODELS <= len(names) <= MAX_MODELS:
        raise InputError(f"Choose {MIN_MODELS} to {MAX_MODELS} different models to compare "
                         f"(got {len(names)}).")
    reference = reference or names[0]
    if reference not in names:
        raise InputError(f"The reference '{reference}' must be one of the compared models.")
    return names, reference


def _space_values(result: DepthResult, inverse: bool) -> np.ndarray:
    """The result in depth or inverse-depth space, float64 (H, W), NaN invalid."""
    values = np.where(result.valid_mask, result.depth, np.nan).astype(np.float64)
    native_inverse = result.kind is DepthKind.RELATIVE_DISPARITY
    if inverse == native_inverse:
        return values
    return depth_to_disparity(values) if inverse else disparity_to_depth(values)


def align_to_reference(
    result: DepthResult, target: np.ndarray, inverse_space: bool, mask: np.ndarray
) -> tuple[np.ndarray, float, float]:
    """Align ``result`` to ``target`` (in the comparison space) in the result's native space.

    Returns ``(aligned values in the comparison space, scale, shift)``. Raises
    ``ValueError`` when the prediction is constant where the reference is valid.
    """
    native_inverse = result.kind is DepthKind.RELATIVE_DISPARITY
    pred = _space_values(result, native_inverse)
    goal = target if native_inverse == inverse_space else (
        depth_to_disparity(target) if native_inverse else disparity_to_depth(target))
    fit_mask = mask & np.isfinite(pred) & np.isfinite(goal)
    try:
        scale, shift = fit_scale_shift(pred, goal, fit_mask, trim=TRIM)
    except ValueError:  # the inliers of the trimmed fit are constant: use every pixel
        scale, shift = fit_scale_shift(pred, goal, fit_mask)
    fitted = scale * pred + shift
    if native_inverse != inverse_space:
        fitted = disparity_to_depth(fitted) if native_inverse else depth_to_disparity(fitted)
    elif not inverse_space:
        fitted = np.where(fitted > 0, fitted, np.nan)
    return fitted, float(scale), float(shift)


def _row(result: DepthResult, rel: np.ndarray, ratio: np.ndarray, scale: float,
         shift: float) -> dict:
    ok = np.isfinite(rel)
    n = int(ok.sum())
    return {
        "model": result.model, "kind": str(result.kind), "scale": scale, "shift": shift,
        "abs_rel": float(np.mean(rel[ok])) if n else float("nan"),
        "median_rel": float(np.median(rel[ok])) if n else float("nan"),
        "delta1": float(np.mean(ratio[ok] < 1.25)) if n else float("nan"),
        "pixels": n, "forward_ms": round(result.timings_ms.get("forward", float("nan")), 1),
    }


def agreement(results: list[DepthResult], reference: str) -> tuple[np.ndarray, dict]:
    """(mean relative difference map, summary) of ``results`` against the reference model."""
    ref = next(r for r in results if r.model == reference)
    inverse_space = ref.kind is DepthKind.RELATIVE_DISPARITY
    target = _space_values(ref, inverse_space)
    with np.errstate(invalid="ignore"):
        mask = np.isfinite(target) & (target > 0)
        if inverse_space and mask.any():  # tiny inverse depths (sky) make ratios meaningless
            mask &= target > np.percentile(target[mask], 98) / visuals.MAX_RELATIVE_RANGE
    rows = [{"model": ref.model, "kind": str(ref.kind), "reference": True,
             "forward_ms": round(ref.timings_ms.get("forward", float("nan")), 1)}]
    maps = []
    for res in results:
        if res is ref:
            continue
        try:
            fitted, scale, shift = align_to_reference(res, target, inverse_space, mask)
        except ValueError:
            log.info("%s predicts a constant map: not aligned", res.model)
            rows.append({**_row(res, np.full(target.shape, np.nan), target, np.nan, np.nan),
                         "note": "constant prediction: cannot be aligned"})
            continue
        with np.errstate(invalid="ignore", divide="ignore"):
            rel = np.where(mask, np.abs(fitted - target) / target, np.nan)
            ratio = np.maximum(fitted / target, target / fitted)
        maps.append(rel)
        rows.append(_row(res, rel, ratio, scale, shift))
    if not maps:
        raise InputError("No model could be aligned to the reference: every other model "
                         "predicts a constant map for this photo.")
    with np.errstate(invalid="ignore"):
        stack = np.stack(maps)
        counts = np.isfinite(stack).sum(axis=0)
        mean = np.where(counts > 0, np.nansum(stack, axis=0) / np.maximum(counts, 1), np.nan)
    summary = {"reference": ref.model, "space": "inverse depth" if inverse_space else "depth",
               "agreement": "mean |aligned - reference| / reference over the other models",
               "models": rows}
    return mean.astype(np.float32), summary


def compare_models(
    image_path: str | Path | None,
    models: list[str] | str | None,
    reference: str | None,
    settings: Settings,
    out_dir: Path,
    *,
    cmap: str = "turbo",
    predict_fn: PredictFn,
    progress: Progress = _noop,
    name: str | None = None,
    check_model: Callable[[str], object] | None = None,
) -> CompareOutcome:
    """Run every model on the photo, align them to the reference and write the files.

    ``check_model(name)`` raises for an unknown model (default: the registry's ``get_spec``);
    every name is checked before any model runs.
    """
    from depthweb.geometry.colormap import colorize
    from depthweb.models.registry import get_spec
    from depthweb.services.predict import CameraHint

    names, reference = checked_models(models, reference)
    for n in names:
        (check_model or (lambda m: get_spec(m, settings)))(n)
    progress(0.02, "Reading the photo")
    image, decode_ms = decode_photo(image_path, settings, name)
    stem = photo_stem(image_path, name)
    results = []
    for i, model in enumerate(names):
        progress((i + 0.1) / (len(names) + 1), f"Running {model}")
        result = predict_fn([image], model, camera=CameraHint(), settings=settings)[0]
        result.timings_ms["decode"] = decode_ms
        results.append(result)
    progress(len(names) / (len(names) + 1), "Aligning to the reference")
    t0 = time.perf_counter()
    agree, summary = agreement(results, reference)
    summary["align_ms"] = round((time.perf_counter() - t0) * 1000, 1)
    agree_rgb = colorize(agree, cmap="turbo", invert=True, value_range=AGREEMENT_RANGE)
    previews = [visuals.depth_preview(r, cmap, inverse=True) for r in results]
    files = []
    for r in results:
        files += write_outputs(r, out_dir, f"{stem}_{r.model}", cmap=cmap)[:1]
    files.append(out_dir / f"{stem}_agreement.npy")
    atomic_write_bytes(files[-1], npy_bytes(agree))
    files.append(out_dir / f"{stem}_agreement.png")
    atomic_write_bytes(files[-1], png_bytes(agree_rgb))
    files.append(out_dir / f"{stem}_compare.json")
    atomic_write_bytes(files[-1], json.dumps(summary, indent=2).encode())
    return CompareOutcome(image.rgb, results, reference, agree, agree_rgb, previews, summary,
                          files)
