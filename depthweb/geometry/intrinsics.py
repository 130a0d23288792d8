"""Choosing intrinsics: user > EXIF > model prediction > an assumed field of view.

All focal lengths are in pixels of the image they describe.
"""

from __future__ import annotations

import logging
import math

from depthweb.types import Intrinsics, IntrinsicsSource

log = logging.getLogger(__name__)

DEFAULT_FOV_DEG = 60.0
"""Horizontal FOV assumed when nothing better is known (a typical phone main camera is 65-75)."""

PLAUSIBLE_FOV_DEG = (15.0, 150.0)
"""Horizontal FOV range a predicted focal must fall in, else the assumed FOV is used."""

DIAG_35MM_MM = math.hypot(36.0, 24.0)  # 43.27 mm


def focal_px_from_35mm(focal_35mm: float, width: int, height: int) -> float:
    """EXIF ``FocalLengthIn35mmFilm`` to pixels: ``f_px = f_35 * diag_px / 43.27 mm``."""
    return float(focal_35mm) * math.hypot(width, height) / DIAG_35MM_MM


def focal_px_from_fov(fov_deg: float, width: int) -> float:
    return 0.5 * width / math.tan(math.radians(fov_deg) / 2.0)


def is_plausible(intrinsics: Intrinsics, width: int, height: int) -> bool:
    """Positive, finite focal lengths whose horizontal FOV is in :data:`PLAUSIBLE_FOV_DEG`."""
    vals = (intrinsics.fx, intrinsics.fy, intrinsics.cx, intrinsics.cy)
    if not all(math.isfinite(v) for v in vals) or intrinsics.fx <= 0 or intrinsics.fy <= 0:
        return False
    lo, hi = PLAUSIBLE_FOV_DEG
    return lo <= intrinsics.fov_x_deg(width) <= hi and lo <= intrinsics.fov_y_deg(height) <= hi


def resolve_intrinsics(
    width: int,
    height: int,
    *,
    focal_px: float | None = None,
    fov_deg: float | None = None,
    exif_focal_35mm: float | None = None,
    default_fov_deg: float = DEFAULT_FOV_DEG,
) -> Intrinsics:
    """Known intrinsics for an image: user focal or FOV first, then EXIF, then the assumed FOV."""
    if focal_px is not None:
        if not (math.isfinite(focal_px) and focal_px > 0):
            raise ValueError(f"focal length must be a positive number of pixels, got {focal_px}")
        return Intrinsics.from_focal(width, height, focal_px, IntrinsicsSource.USER)
    if fov_deg is not None:
        if not (0 < fov_deg < 180):
            raise ValueError(f"field of view must be between 0 and 180 degrees, got {fov_deg}")
        return Intrinsics.from_fov(width, height, fov_deg, IntrinsicsSource.USER, note="")
    if exif_focal_35mm:
        f = focal_px_from_35mm(exif_focal_35mm, width, height)
        cand = Intrinsics.from_focal(
            width, height, f, IntrinsicsSource.EXIF,
            note=f"FocalLengthIn35mmFilm={exif_focal_35mm:g}",
        )
        if is_plausible(cand, width, height):
            return cand
        log.warning("ignoring implausible EXIF focal %s mm (35 mm equivalent)", exif_focal_35mm)
    return Intrinsics.from_fov(width, height, default_fov_deg)


def checked_prediction(
    predicted: Intrinsics, width: int, height: int, default_fov_deg: float = DEFAULT_FOV_DEG
) -> tuple[Intrinsics, str | None]:
    """A predicted camera, or the assumed FOV with a note saying why the prediction was dropped."""
    if is_plausible(predicted, width, height):
        return predicted, None
    fallback = Intrinsics.from_fov(width, height, default_fov_deg)
    note = (
        f"predicted focal fx={predicted.fx:.4g} px is implausible for a {width}x{height} image; "
        f"using an assumed {default_fov_deg:g} deg horizontal FOV instead"
    )
    fallback = Intrinsics(**{**fallback.__dict__, "note": note})
    return fallback, note
