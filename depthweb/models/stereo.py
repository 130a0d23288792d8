"""Classic stereo: OpenCV semi-global matching on a rectified pair, ``Z = f * B / (d + doffs)``.

Pipeline (:func:`stereo_depth`):

1. :func:`compute_disparity`: ``cv2.StereoSGBM`` (3-way mode by default) on the left view and, with
   both images mirrored, on the right view. OpenCV's disparities are fixed point (divided by 16
   here). The images are padded on the left by the disparity range first, so SGBM also matches the
   first ``num_disparities`` columns that it otherwise leaves blank; pixels whose match falls
   outside the right image are then rejected by the left-right check like any other.
2. Left-right consistency: a left disparity survives only if the right-view disparity at the
   matched column agrees within ``lr_max_diff`` pixels. SGBM's uniqueness ratio and speckle filter
   also apply. Rejected pixels are NaN: nothing is interpolated or filled.
3. :func:`disparity_to_depth`: metres, NaN where ``d + doffs <= 0`` or ``d`` is invalid.

The default parameters are a textbook SGBM setting (block 5, P1/P2 = 8/32 * channels * block^2,
uniqueness 10 %, speckle window 100 px with range 2 px, left-right tolerance 1 px), the same for
every scene; ``tests/test_stereo.py`` measures them against Middlebury ground truth.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from depthweb.errors import InputError
from depthweb.imaging import LoadedImage
from depthweb.types import DepthKind, DepthResult, Intrinsics, IntrinsicsSource

log = logging.getLogger(__name__)

MODEL_NAME = "stereo-sgbm"
MAX_SIDE = 1_000_000
"""Largest width, height or ndisp a calibration may state (pixels)."""
MODES = {
    "sgbm": cv2.STEREO_SGBM_MODE_SGBM,
    "sgbm3way": cv2.STEREO_SGBM_MODE_SGBM_3WAY,
    "hh": cv2.STEREO_SGBM_MODE_HH,
}


@dataclass(frozen=True)
class StereoCalib:
    """A rectified stereo camera.

    ``focal_px``: horizontal focal length in pixels; ``baseline_m``: camera distance in metres;
    ``doffs_px``: x-difference of the principal points (Middlebury ``doffs``), added to every
    disparity. ``cx``/``cy`` default to the image centre. ``width``/``height``: the image size the
    calibration is for (checked when given). ``ndisp``/``vmin``/``vmax``: disparity bounds.
    """

    focal_px: float
    baseline_m: float
    doffs_px: float = 0.0
    cx: float | None = None
    cy: float | None = None
    width: int | None = None
    height: int | None = None
    ndisp: int | None = None
    vmin: float | None = None
    vmax: float | None = None
    focal_y_px: float | None = None
    name: str = "calibration"

    def __post_init__(self) -> None:
        for label, v in (("focal length", self.focal_px), ("baseline", self.baseline_m)):
            if not (isinstance(v, (int, float, np.floating)) and math.isfinite(v) and v > 0):
                raise InputError(f"{self.name}: the {label} must be a positive number, got {v}.")
        if not math.isfinite(self.doffs_px):
            raise InputError(f"{self.name}: doffs must be a finite number, got {self.doffs_px}.")
        for label, n in (("width", self.width), ("height", self.height), ("ndisp", self.ndisp)):
            if n is not None and not 0 < n <= MAX_SIDE:
                raise InputError(f"{self.name}: {label}={n:.6g} must be a whole number of pixels "
                                 f"between 1 and {MAX_SIDE}.")

    @classmethod
    def from_values(cls, focal_px: float, baseline_m: float, doffs: float = 0.0) -> StereoCalib:
        """A calibration from numbers: focal (px), baseline (m), disparity offset (px)."""
        doffs = float(doffs or 0.0)
        return cls(float(focal_px), float(baseline_m), doffs, name="stereo calibration")

    @classmethod
    def from_middlebury(cls, path: str | Path) -> StereoCalib:
        """Parse a Middlebury 2014 ``calib.txt`` (``cam0``, ``doffs``, ``baseline`` in mm, ...)."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise InputError(f"{path.name} cannot be read: {exc.strerror or exc}.") from exc
        fields = _key_values(text)
        if "cam0" not in fields:
            raise InputError(f"{path.name} is not a Middlebury calib.txt: it has no cam0= line.")
        fx, fy, cx, cy = _camera_matrix(fields["cam0"], path.name, "cam0")
        if "baseline" not in fields:
            raise InputError(f"{path.name} has no baseline= line (the baseline in mm).")
        num = _number_reader(fields, path.name)
        doffs = num("doffs")
        if doffs is None and "cam1" in fields:
            doffs = _camera_matrix(fields["cam1"], path.name, "cam1")[2] - cx
        ints = {k: num(k) for k in ("width", "height", "ndisp")}
        return cls(
            focal_px=fx, baseline_m=num("baseline") / 1000.0, doffs_px=doffs or 0.0, cx=cx, cy=cy,
            width=_opt_int(ints["width"]), height=_opt_int(ints["height"]),
            ndisp=_opt_int(ints["ndisp"]), vmin=num("vmin"), vmax=num("vmax"), focal_y_px=fy,
            name=path.name,
        )

    def intrinsics(self, width: int, height: int) -> Intrinsics:
        """Left-camera intrinsics (source ``calib``); principal point defaults to the centre."""
        cx = width / 2.0 if self.cx is None else self.cx
        cy = height / 2.0 if self.cy is None else self.cy
        note = (f"stereo baseline {self.baseline_m:.6g} m, doffs {self.doffs_px:.6g} px "
                f"({self.name})")
        fy = self.focal_y_px or self.focal_px
        return Intrinsics(self.focal_px, fy, cx, cy, IntrinsicsSource.CALIB, note)


def _key_values(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if "=" in line:
            key, value = line.split("=", 1)
            out[key.strip().lower()] = value.strip()
    return out


def _camera_matrix(value: str, fname: str, key: str) -> tuple[float, float, float, float]:
    """``[f 0 cx; 0 f cy; 0 0 1]`` -> (fx, fy, cx, cy)."""
    rows = [r.split() for r in value.strip().strip("[]").split(";")]
    try:
        m = np.array([[float(v) for v in r] for r in rows], dtype=np.float64)
    except ValueError:
        m = np.zeros((0,))
    if m.shape != (3, 3) or not np.isfinite(m).all():
        raise InputError(
            f"{fname}: {key} is not a 3x3 matrix like [f 0 cx; 0 f cy; 0 0 1] (got {value!r})."
        )
    return float(m[0, 0]), float(m[1, 1]), float(m[0, 2]), float(m[1, 2])


def _number_reader(fields: dict[str, str], fname: str):
    def read(key: str) -> float | None:
        if key not in fields:
            return None
        try:
            v = float(fields[key])
        except ValueError:
            raise InputError(f"{fname}: {key}={fields[key]!r} is not a number.") from None
        if not math.isfinite(v):
            raise InputError(f"{fname}: {key}={fields[key]!r} is not a finite number.")
        return v

    return read


def _opt_int(v: float | None) -> int | None:
    return None if v is None else round(v)


@dataclass(frozen=True)
class SGBMParams:
    """Matcher settings; P1/P2 are per channel and per block pixel (OpenCV's usual scaling)."""

    block_size: int = 5
    p1_factor: int = 8
    p2_factor: int = 32
    uniqueness_ratio: int = 10
    speckle_window: int = 100
    speckle_range: int = 2
    pre_filter_cap: int = 63
    mode: str = "sgbm3way"
    lr_max_diff: float = 1.0


@dataclass
class StereoResult:
    """Metric depth (``depth.depth``, metres, NaN invalid) and the disparity it came from.

    ``disparity``: float32 (H, W) in pixels of the left image, NaN where invalid, without doffs.
    """

    depth: DepthResult
    disparity: np.ndarray


def default_num_disparities(width: int, calib: StereoCalib | None = None) -> int:
    """Calib ``ndisp`` (or a quarter of the width) rounded up to a multiple of 16."""
    n = calib.ndisp if calib is not None and calib.ndisp else max(width // 4, 16)
    return int(math.ceil(n / 16.0) * 16)


def check_cost(height: int, width: int, num_disparities: int, max_cost: float | None) -> None:
    """Refuse (one sentence) a match of ``height x width`` pixels over ``num_disparities``
    disparities whose pixel-disparity count exceeds ``max_cost`` (``None``/0: no limit)."""
    cost = float(height) * float(width) * float(num_disparities)
    if max_cost and cost > max_cost:
        raise InputError(
            f"This stereo pair needs {num_disparities} disparities at {width}x{height} "
            f"({cost:.3g} pixel-disparities), over this server's limit of {max_cost:.3g}: "
            "use smaller images or a calibration with a smaller ndisp."
        )


UNRECTIFIED_PX = 1.0
"""Median vertical offset of matched features above which a 'rectified' pair is flagged."""


def rectification_note(left: np.ndarray, right: np.ndarray) -> str | None:
    """A note when matched features of a supposedly rectified pair are off their rows by more
    than :data:`UNRECTIFIED_PX` (median), else ``None`` (also when too few features match)."""
    from depthweb.models.rectify import vertical_disparity

    if min(left.shape[:2]) < 32:
        return None
    found = vertical_disparity(left, right)
    if found is None or found[0] <= UNRECTIFIED_PX:
        return None
    return (f"this pair does not look rectified: {found[1]} matched features are a median "
            f"{found[0]:.1f} px apart vertically (a rectified pair has 0), so these disparities "
            "are unreliable; rectify the pair (a calibration file, or rectify from features)")


def _check_pair(left: np.ndarray, right: np.ndarray, names: tuple[str, str]) -> None:
    for arr, side, name in zip((left, right), ("left", "right"), names, strict=True):
        if arr.dtype != np.uint8 or arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] != 3):
            raise ValueError(f"{name or side + ' image'}: expected uint8 (H, W) or (H, W, 3), got "
                             f"{arr.dtype} {arr.shape}")
    if left.shape[:2] != right.shape[:2]:
        (hl, wl), (hr, wr) = left.shape[:2], right.shape[:2]
        lname, rname = (f" {n}" if n else "" for n in names)
        raise InputError(
            f"The left image{lname} is {wl}x{hl} but the right image{rname} is {wr}x{hr}: "
            "a rectified stereo pair must have the same size."
        )


def make_matcher(params: SGBMParams, min_disp: int, num_disp: int, channels: int) -> cv2.StereoSGBM:
    """The configured ``cv2.StereoSGBM`` (``channels``: 1 for gray, 3 for colour input)."""
    if params.mode not in MODES:
        raise ValueError(f"unknown SGBM mode {params.mode!r}; choose one of {sorted(MODES)}")
    area = channels * params.block_size**2
    return cv2.StereoSGBM_create(
        minDisparity=min_disp, numDisparities=num_disp, blockSize=params.block_size,
        P1=params.p1_factor * area, P2=params.p2_factor * area, disp12MaxDiff=-1,
        preFilterCap=params.pre_filter_cap, uniquenessRatio=params.uniqueness_ratio,
        speckleWindowSize=params.speckle_window, speckleRange=params.speckle_range,
        mode=MODES[params.mode],
    )


def _match(matcher, a: np.ndarray, b: np.ndarray, min_disp: int, num_disp: int) -> np.ndarray:
    """One SGBM pass on border-padded images -> float32 (H, W) disparity, NaN invalid."""
    pad_l, pad_r = max(min_disp + num_disp, 0), max(-min_disp, 0)
    a_p = cv2.copyMakeBorder(a, 0, 0, pad_l, pad_r, cv2.BORDER_REPLICATE)
    b_p = cv2.copyMakeBorder(b, 0, 0, pad_l, pad_r, cv2.BORDER_REPLICATE)
    raw = matcher.compute(a_p, b_p)[:, pad_l : pad_l + a.shape[1]]
    disp = raw.astype(np.float32) / 16.0
    disp[raw < min_disp * 16] = np.nan
    return disp


def left_right_check(disp_left: np.ndarray, disp_right: np.ndarray, max_diff: float) -> np.ndarray:
    """Boolean (H, W): left disparities whose match in the right view agrees within ``max_diff``.

    Both inputs float32 (H, W) in pixels, NaN invalid; ``disp_right`` is indexed by right-image
    columns (left pixel ``x`` matches right pixel ``x - d``).
    """
    w = disp_left.shape[1]
    finite = np.isfinite(disp_left)
    xr = np.rint(np.arange(w, dtype=np.float32)[None, :] - np.where(finite, disp_left, 0.0))
    inside = finite & (xr >= 0) & (xr < w)
    back = np.take_along_axis(disp_right, np.clip(xr, 0, w - 1).astype(np.intp), axis=1)
    with np.errstate(invalid="ignore"):
        return inside & (np.abs(back - disp_left) <= max_diff)


def compute_disparity(
    left_rgb: np.ndarray,
    right_rgb: np.ndarray,
    *,
    num_disparities: int | None = None,
    min_disparity: int = 0,
    params: SGBMParams | None = None,
    calib: StereoCalib | None = None,
    names: tuple[str, str] = ("", ""),
) -> np.ndarray:
    """Left-view disparity of a rectified pair: float32 (H, W) pixels, NaN where invalid.

    Inputs: uint8 (H, W, 3) RGB or (H, W) gray, same size. ``num_disparities`` (a multiple of 16)
    defaults to :func:`default_num_disparities`. Pixels failing SGBM's uniqueness / speckle
    filters or the left-right check are NaN. ``names`` (file names, optional) go into errors.
    """
    _check_pair(left_rgb, right_rgb, names)
    params = params or SGBMParams()
    num = num_disparities or default_num_disparities(left_rgb.shape[1], calib)
    if num <= 0 or num % 16:
        raise ValueError(f"num_disparities must be a positive multiple of 16, got {num}")
    channels = 1 if left_rgb.ndim == 2 else 3
    matcher = make_matcher(params, min_disparity, num, channels)
    disp_l = _match(matcher, left_rgb, right_rgb, min_disparity, num)
    # Right view: mirror both images and swap them, so the same matcher sees positive disparities.
    mirrored_r = np.ascontiguousarray(right_rgb[:, ::-1])
    mirrored_l = np.ascontiguousarray(left_rgb[:, ::-1])
    disp_r = _match(matcher, mirrored_r, mirrored_l, min_disparity, num)[:, ::-1]
    ok = left_right_check(disp_l, disp_r, params.lr_max_diff)
    disp_l[~ok] = np.nan
    return disp_l


def disparity_to_depth(disparity: np.ndarray, calib: StereoCalib) -> np.ndarray:
    """Depth in metres, float32 (H, W): ``f * B / (d + doffs)``; NaN where invalid or d+doffs<=0."""
    d = np.asarray(disparity, dtype=np.float64) + calib.doffs_px
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(np.isfinite(d) & (d > 0), calib.focal_px * calib.baseline_m / d, np.nan)
    return z.astype(np.float32)


def _check_calib_fits(calib: StereoCalib, w: int, h: int) -> None:
    if calib.width and calib.height and (calib.width, calib.height) != (w, h):
        raise InputError(
            f"{calib.name} describes {calib.width}x{calib.height} images but the pair is "
            f"{w}x{h}: use the calibration made for this resolution."
        )
    if calib.ndisp and calib.ndisp >= w:
        raise InputError(
            f"{calib.name} asks for {calib.ndisp} disparities but the pair is only {w} pixels "
            "wide: use the calibration made for this resolution."
        )


def stereo_depth(
    left: np.ndarray | LoadedImage,
    right: np.ndarray | LoadedImage,
    calib: StereoCalib,
    *,
    num_disparities: int | None = None,
    params: SGBMParams | None = None,
    max_cost: float | None = None,
    check_rows: bool = True,
) -> StereoResult:
    """Metric depth of the left view of a rectified pair (uint8 (H, W, 3) arrays or images).

    ``max_cost``: pixel-disparity limit checked before matching (:func:`check_cost`);
    ``check_rows``: measure whether the pair is really rectified (:func:`rectification_note`).
    """
    names = tuple(x.name if isinstance(x, LoadedImage) else "" for x in (left, right))
    left_rgb = left.rgb if isinstance(left, LoadedImage) else np.asarray(left)
    right_rgb = right.rgb if isinstance(right, LoadedImage) else np.asarray(right)
    _check_pair(left_rgb, right_rgb, names)
    h, w = left_rgb.shape[:2]
    _check_calib_fits(calib, w, h)
    params = params or SGBMParams()
    num = num_disparities or default_num_disparities(w, calib)
    check_cost(h, w, num, max_cost)
    t0 = time.perf_counter()
    disp = compute_disparity(left_rgb, right_rgb, num_disparities=num,
                             params=params, calib=calib, names=names)
    t1 = time.perf_counter()
    depth = disparity_to_depth(disp, calib)
    t2 = time.perf_counter()
    row_note = rectification_note(left_rgb, right_rgb) if check_rows else None
    t3 = time.perf_counter()
    result = DepthResult(
        depth=depth, kind=DepthKind.METRIC_DEPTH, intrinsics=calib.intrinsics(w, h),
        model=MODEL_NAME, weights=f"opencv {cv2.__version__} StereoSGBM {params.mode}",
        timings_ms={"disparity": (t1 - t0) * 1e3, "depth": (t2 - t1) * 1e3},
        notes=[f"left-right check {params.lr_max_diff:g} px; invalid pixels are NaN, not filled"],
    )
    if check_rows:
        result.timings_ms["rectified_check"] = (t3 - t2) * 1e3
    if row_note:
        result.notes.append(row_note)
    log.debug("stereo %s: valid %.1f %%", names, 100 * result.valid_fraction)
    return StereoResult(depth=result, disparity=disp)


__all__ = [
    "SGBMParams", "StereoCalib", "StereoResult", "check_cost", "compute_disparity",
    "default_num_disparities", "disparity_to_depth", "left_right_check", "make_matcher",
    "rectification_note", "stereo_depth",
]
