"""Predict use case: images in, typed results (and raw exports) out. Used by the CLI and the app."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from depthweb.config import Settings, get_settings
from depthweb.errors import DepthwebError, InputError
from depthweb.geometry.intrinsics import resolve_intrinsics
from depthweb.imaging import LoadedImage, check_dimensions, display_name, load_image
from depthweb.models.registry import load_backend
from depthweb.services.export import npy_bytes, write_outputs
from depthweb.types import DepthResult, Intrinsics

log = logging.getLogger(__name__)


@dataclass
class CameraHint:
    """What the user knows about the camera, all optional (``focal_35mm``: 35 mm equivalent)."""

    focal_px: float | None = None
    fov_deg: float | None = None
    focal_35mm: float | None = None

    def intrinsics_for(self, image: LoadedImage, settings: Settings) -> Intrinsics:
        h, w = image.rgb.shape[:2]
        focal_px = self.focal_px
        if focal_px is None and self.focal_35mm:
            from depthweb.geometry.intrinsics import focal_px_from_35mm

            focal_px = focal_px_from_35mm(self.focal_35mm, w, h)
        try:
            return resolve_intrinsics(
                w, h, focal_px=focal_px, fov_deg=self.fov_deg,
                exif_focal_35mm=image.exif_focal_35mm, default_fov_deg=settings.default_fov_deg,
            )
        except ValueError as exc:
            msg = str(exc)
            raise DepthwebError(msg[0].upper() + msg[1:] + ".") from exc


BUNDLED_MODEL = "depthweb-student"
"""The model that always works offline (weights ship in ``assets/student``)."""


def resolve_model(model: str | None, settings: Settings | None = None) -> tuple[str, str]:
    """(model name, why it was chosen) when the caller gave ``model`` or nothing.

    Without a name: the configured default (``settings.default_model``) if its weights are on
    this machine, else the bundled student. The reason is a phrase for the user, e.g.
    "bundled student; the configured default depth-anything-v2-small has no weights here".
    """
    if model:
        return model, "chosen"
    from depthweb.models.loading import is_available
    from depthweb.models.registry import get_spec

    settings = settings or get_settings()
    preferred = settings.default_model
    try:
        if preferred and is_available(get_spec(preferred, settings), settings):
            return preferred, "configured default"
    except DepthwebError as exc:  # an unknown configured name: say so, fall back
        log.info("configured default model %r is unusable: %s", preferred, exc)
    return BUNDLED_MODEL, (f"bundled student; the configured default {preferred} has no "
                           "weights on this machine")


@dataclass
class FileOutcome:
    """One input file of a batch: its result and written files, or the error sentence."""

    path: Path
    result: DepthResult | None = None
    files: list[Path] = field(default_factory=list)
    error: str | None = None


def predict_images(
    images: Sequence[LoadedImage | np.ndarray],
    model: str | None = None,
    *,
    weights: str | Path | None = None,
    camera: CameraHint | None = None,
    device: str | None = None,
    settings: Settings | None = None,
) -> list[DepthResult]:
    """Predict depth for decoded images with one batched call of the model.

    Every image is checked first (RGB uint8, pixel limit, aspect ratio): arrays handed to the
    Python API get the same one-sentence refusals as decoded files. ``model`` ``None``: see
    :func:`resolve_model` (each result's ``model`` says which one ran).
    """
    settings = settings or get_settings()
    model, _ = resolve_model(model, settings)
    camera = camera or CameraHint()
    loaded = [im if isinstance(im, LoadedImage) else _from_array(im) for im in images]
    for im in loaded:
        check_dimensions(im.width, im.height, im.name, settings.max_pixels)
    backend = load_backend(model, weights, device=device, settings=settings)
    t0 = time.perf_counter()
    intr = [camera.intrinsics_for(im, settings) for im in loaded]
    prep_ms = (time.perf_counter() - t0) * 1000 / max(len(loaded), 1)
    results = backend.infer_batch([im.rgb for im in loaded], intr)
    for res in results:
        res.timings_ms["intrinsics"] = prep_ms
    return results


def _from_array(rgb: np.ndarray) -> LoadedImage:
    if not isinstance(rgb, np.ndarray):
        raise InputError(f"Expected an RGB uint8 (H, W, 3) array or an image file, got "
                         f"{type(rgb).__name__}.")
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise InputError(f"Expected an RGB uint8 (H, W, 3) array, got {rgb.dtype} {rgb.shape}.")
    return LoadedImage(rgb=np.ascontiguousarray(rgb), name="array", exif_focal_35mm=None,
                       original_mode="RGB", orientation_applied=False)


def predict_image(
    image: LoadedImage | np.ndarray | str | Path, model: str | None = None, **kwargs
) -> DepthResult:
    """One image (a path, a decoded image or an RGB uint8 array) -> one :class:`DepthResult`.

    ``model`` ``None``: the configured default if its weights are here, else the bundled
    student (:func:`resolve_model`); ``result.model`` says which.
    """
    if isinstance(image, (str, Path)):
        image = load_image(image)
    return predict_images([image], model, **kwargs)[0]


def predict_files(
    paths: Sequence[Path],
    model: str,
    out_dir: Path,
    *,
    weights: str | Path | None = None,
    camera: CameraHint | None = None,
    device: str | None = None,
    settings: Settings | None = None,
    on_progress: Callable[[FileOutcome], None] | None = None,
) -> list[FileOutcome]:
    """Predict each file and write its exports; a bad file is reported and the rest go on.

    Model problems (unknown model, weights missing) are raised: no file can succeed without them.
    """
    settings = settings or get_settings()
    load_backend(model, weights, device=device, settings=settings)  # fail fast, before any file
    outcomes = []
    for path in paths:
        outcome = FileOutcome(Path(path))
        try:
            t0 = time.perf_counter()
            image = load_image(path, max_pixels=settings.max_pixels)
            decode_ms = (time.perf_counter() - t0) * 1000
            result = predict_images([image], model, weights=weights, camera=camera,
                                    device=device, settings=settings)[0]
            result.timings_ms["decode"] = decode_ms
            outcome.result = result
            more = ({} if result.confidence is None else  # UniDepth: (H, W) float32 in [0, 1]
                    {"_confidence.npy": npy_bytes(result.confidence.astype(np.float32))})
            outcome.files = write_outputs(result, out_dir, Path(path).stem, more=more,
                                          extra={"input": Path(path).name})
        except DepthwebError as exc:
            outcome.error = str(exc)
        except OSError as exc:
            outcome.error = (f"{display_name(Path(path).name)}: could not write outputs "
                             f"({exc.strerror or exc}).")
        outcomes.append(outcome)
        if on_progress:
            on_progress(outcome)
    return outcomes
