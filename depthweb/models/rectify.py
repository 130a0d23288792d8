"""Rectification before matching (OpenCV): calibrated, essential-matrix and fundamental-matrix.

A :class:`Rectification` holds the remap tables that warp both views so that corresponding points
lie on the same row, the map from original left pixels into the rectified left view (to bring
disparity and depth back to the left camera's **original** image geometry), and the inlier
statistics the info panel shows.

- :func:`rectify_calibrated`: a :class:`~depthweb.models.rigcalib.RigCalib` ->
  ``cv2.stereoRectify`` + ``cv2.initUndistortRectifyMap``; metric depth from ``Q``.
- :func:`rectify_uncalibrated`: SIFT features on a downscaled pair, ratio test, a MAGSAC
  fundamental matrix; with a focal length the essential matrix and ``cv2.recoverPose`` feed
  ``cv2.stereoRectify`` (depth up to one global scale: the baseline is 1 unit); without one,
  ``cv2.stereoRectifyUncalibrated`` gives two homographies (disparity only).

Pairs that cannot be rectified (too few matches, too little motion, a rotation only, the camera
moving along its viewing direction) are refused with one sentence (:class:`InputError`).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from depthweb.errors import InputError
from depthweb.models.rigcalib import RigCalib

log = logging.getLogger(__name__)

MATCH_MAX_SIDE = 1024
"""Features are matched on a copy whose longer side is at most this many pixels."""
MIN_INLIERS = 30
MIN_PARALLAX_PX = 2.0
"""If the best homography explains 90 % of the inliers this closely (pixels at the matching
scale), the pair has no usable depth parallax (a rotation only, or too little motion)."""
MAX_AFTER_PX = 1.0
"""A rectification whose inliers are further than this from their rows is refused."""


@dataclass
class Matches:
    """Matched feature positions, (N, 2) float64 in full-resolution pixels of each view."""

    left: np.ndarray
    right: np.ndarray

    def __len__(self) -> int:
        return int(self.left.shape[0])

    def subset(self, mask: np.ndarray) -> Matches:
        m = np.asarray(mask).ravel().astype(bool)
        return Matches(self.left[m], self.right[m])


@dataclass
class Rectification:
    """How a pair was rectified (all pixel arrays in float32, rectified size = original size).

    ``maps_left``/``maps_right``: ``(map_x, map_y)`` (H, W) for ``cv2.remap`` (rectified pixel ->
    source pixel); ``to_rect``: (H, W, 2) rectified-left position of every original left pixel.
    ``q``: OpenCV's (4, 4) reprojection matrix (``None`` on the fundamental path);
    ``r1``: rotation of the original left camera into the rectified one (``None`` likewise).
    ``disparity_range``: (lowest, highest) rectified disparity of the inliers, pixels.
    ``epipolar_before_px``/``epipolar_after_px``: median vertical offset of the inlier matches in
    the original / rectified pair (0 is a perfectly rectified pair).
    """

    method: str
    maps_left: tuple[np.ndarray, np.ndarray]
    maps_right: tuple[np.ndarray, np.ndarray]
    to_rect: np.ndarray
    q: np.ndarray | None
    r1: np.ndarray | None
    inliers: int
    disparity_range: tuple[float, float]
    epipolar_before_px: float
    epipolar_after_px: float
    notes: list[str] = field(default_factory=list)

    def warp(self, left: np.ndarray, right: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The rectified pair (same dtype and shape as the inputs)."""
        return (cv2.remap(left, *self.maps_left, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT),
                cv2.remap(right, *self.maps_right, cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT))

    def to_original(self, rectified: np.ndarray) -> np.ndarray:
        """A float (H, W) map of the rectified left view resampled at the original left pixels
        (nearest neighbour: NaN holes are never blended into their neighbours)."""
        return cv2.remap(np.asarray(rectified, np.float32), self.to_rect[..., 0],
                         self.to_rect[..., 1], cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT,
                         borderValue=float("nan"))

    def depth_original(self, disparity: np.ndarray) -> np.ndarray:
        """Depth along the **original** left camera's optical axis, float32 (H, W) in the
        original left geometry, from a rectified-left disparity (pixels, NaN invalid); units of
        the baseline (metres when calibrated). Needs ``q`` and ``r1``."""
        if self.q is None or self.r1 is None:
            raise ValueError("the fundamental-matrix path has no depth, only disparity")
        h, w = disparity.shape
        v, u = np.mgrid[0:h, 0:w].astype(np.float64)
        d = np.asarray(disparity, np.float64)
        pts = np.stack([u, v, d, np.ones_like(d)], -1) @ self.q.T  # homogeneous rectified 3D
        with np.errstate(divide="ignore", invalid="ignore"):
            xyz = pts[..., :3] / pts[..., 3:4]
            z = xyz @ self.r1[:, 2]  # (r1^T @ xyz)_z: depth along the original optical axis
            z = np.where(np.isfinite(z) & (xyz[..., 2] > 0) & (z > 0), z, np.nan)
        return self.to_original(z.astype(np.float32))

    def info(self) -> dict:
        """JSON-ready summary for the info panel."""
        lo, hi = self.disparity_range
        return {"method": self.method, "inliers": self.inliers,
                "epipolar_error_before_px": round(self.epipolar_before_px, 3),
                "epipolar_error_after_px": round(self.epipolar_after_px, 3),
                "disparity_range_px": [round(lo, 2), round(hi, 2)], "notes": list(self.notes)}


def _gray(img: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(img, cv2.COLOR_RGB2GRAY) if img.ndim == 3 else img


def match_features(left: np.ndarray, right: np.ndarray, max_side: int = MATCH_MAX_SIDE,
                   max_features: int = 6000) -> Matches:
    """SIFT matches between two uint8 views (Lowe's ratio test 0.75, mutual best matches),
    detected on copies scaled to ``max_side``; positions in full-resolution pixels."""
    sift = cv2.SIFT_create(nfeatures=max_features)
    found = []
    for img in (left, right):
        scale = min(1.0, max_side / max(img.shape[:2]))
        g = _gray(img)
        if scale < 1.0:
            g = cv2.resize(g, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        kps, desc = sift.detectAndCompute(g, None)
        pts = np.array([k.pt for k in kps], np.float64).reshape(-1, 2)
        found.append(((pts + 0.5) / scale - 0.5, desc))
    (pl, dl), (pr, dr) = found
    if dl is None or dr is None or len(pl) < 2 or len(pr) < 2:
        return Matches(np.zeros((0, 2)), np.zeros((0, 2)))
    bf = cv2.BFMatcher(cv2.NORM_L2)
    fwd = bf.knnMatch(dl, dr, k=2)
    back = {m.queryIdx: m.trainIdx for m in bf.match(dr, dl)}
    keep = [m for m, n in (p for p in fwd if len(p) == 2)
            if m.distance < 0.75 * n.distance and back.get(m.trainIdx) == m.queryIdx]
    il = np.array([m.queryIdx for m in keep], np.intp)
    ir = np.array([m.trainIdx for m in keep], np.intp)
    return Matches(pl[il], pr[ir])


def epipolar_inliers(matches: Matches, width: int, height: int) -> tuple[np.ndarray, Matches]:
    """MAGSAC fundamental matrix (3, 3) and its inlier matches; refuses a pair that barely
    overlaps (fewer than :data:`MIN_INLIERS` inliers)."""
    advice = ("the two photos do not overlap enough to rectify them (only {n} features match, "
              f"{MIN_INLIERS} are needed): take them of the same scene from nearby viewpoints.")
    if len(matches) < MIN_INLIERS:
        raise InputError(advice.format(n=len(matches)).capitalize())
    thresh = max(1.0, max(width, height) / MATCH_MAX_SIDE)
    f, mask = cv2.findFundamentalMat(matches.left, matches.right, cv2.USAC_MAGSAC, thresh,
                                     0.999, 20000)
    if f is None or mask is None or int(mask.sum()) < MIN_INLIERS:
        n = 0 if mask is None else int(mask.sum())
        raise InputError(advice.format(n=n).capitalize())
    return f[:3], matches.subset(mask)


def check_motion(f: np.ndarray, inl: Matches, width: int, height: int) -> None:
    """Refuse motion that cannot be rectified: too small, a rotation only (a homography explains
    the matches), or along the viewing direction (an epipole inside the picture)."""
    h_mat, _ = cv2.findHomography(inl.left, inl.right, cv2.RANSAC, 3.0)
    if h_mat is not None:
        moved = cv2.perspectiveTransform(inl.left.reshape(-1, 1, 2), h_mat).reshape(-1, 2)
        parallax = float(np.percentile(np.linalg.norm(moved - inl.right, axis=1), 90))
        if parallax < MIN_PARALLAX_PX * max(1.0, max(width, height) / MATCH_MAX_SIDE):
            shift = float(np.median(np.linalg.norm(inl.left - inl.right, axis=1)))
            what = ("the camera barely moved between the photos" if shift < 3 * MIN_PARALLAX_PX
                    else "the camera only turned (or the scene is one flat plane)")
            raise InputError(f"This pair cannot be rectified: {what}, so there is no depth "
                             "parallax; move the camera sideways between the two photos.")
    _, _, vt = np.linalg.svd(f)
    e = vt[-1]  # left epipole (homogeneous)
    if abs(e[2]) > 1e-12 and _expands_from(inl, e[:2] / e[2], width, height):
        ex, ey = e[:2] / e[2]
        raise InputError("This pair cannot be rectified: the camera moved along its viewing "
                         f"direction (the epipole falls at ({ex:.0f}, {ey:.0f}), inside the "
                         "picture); move the camera sideways between the two photos.")


def _expands_from(inl: Matches, epipole: np.ndarray, width: int, height: int) -> bool:
    """True when ``epipole`` (x, y) lies inside the picture and the matches move radially
    from (or towards) it on every side, as forward motion makes them; a badly conditioned
    epipole estimate of a sideways pair (all matches moving one way) does not count."""
    if not (0 <= epipole[0] < width and 0 <= epipole[1] < height):
        return False
    flow = inl.right - inl.left
    radial = inl.left - epipole
    moving = np.linalg.norm(flow, axis=1) > 0.5
    if moving.sum() < MIN_INLIERS:
        return False
    dots = np.einsum("ij,ij->i", flow[moving], radial[moving])
    same = max((dots > 0).mean(), (dots < 0).mean())
    sides = (radial[moving, 0] > 0).mean()
    return bool(same > 0.8 and 0.1 < sides < 0.9)


def _vertical_offset(pl: np.ndarray, pr: np.ndarray) -> float:
    return float(np.median(np.abs(pl[:, 1] - pr[:, 1]))) if len(pl) else float("nan")


def _disparity_range(xl: np.ndarray, xr: np.ndarray) -> tuple[float, float]:
    d = xl - xr
    return float(np.percentile(d, 0.5)), float(np.percentile(d, 99.5))


def _grid(width: int, height: int) -> np.ndarray:
    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    return np.stack([u, v], -1).reshape(-1, 1, 2)


def _from_rotations(method: str, inl: Matches, size: tuple[int, int], cams: tuple,
                    r: np.ndarray, t: np.ndarray) -> Rectification:
    """``cv2.stereoRectify`` for cameras ``cams = (K1, D1, K2, D2)`` and pose ``r``, ``t``."""
    k1, d1, k2, d2 = cams
    w, h = size
    r1, r2, p1, p2, q, _, _ = cv2.stereoRectify(k1, d1, k2, d2, size, r, t.reshape(3, 1),
                                                flags=cv2.CALIB_ZERO_DISPARITY, alpha=-1)
    maps_l = cv2.initUndistortRectifyMap(k1, d1, r1, p1, size, cv2.CV_32FC1)
    maps_r = cv2.initUndistortRectifyMap(k2, d2, r2, p2, size, cv2.CV_32FC1)
    to_rect = cv2.undistortPoints(_grid(w, h), k1, d1, R=r1, P=p1).reshape(h, w, 2)
    rl = cv2.undistortPoints(inl.left.reshape(-1, 1, 2), k1, d1, R=r1, P=p1).reshape(-1, 2)
    rr = cv2.undistortPoints(inl.right.reshape(-1, 1, 2), k2, d2, R=r2, P=p2).reshape(-1, 2)
    return Rectification(method, maps_l, maps_r, to_rect.astype(np.float32), q, r1, len(inl),
                         _disparity_range(rl[:, 0], rr[:, 0]),
                         _vertical_offset(inl.left, inl.right), _vertical_offset(rl, rr))


def rectify_calibrated(left: np.ndarray, right: np.ndarray, rig: RigCalib) -> Rectification:
    """Rectify with a calibration; the disparity range comes from matched features (the
    inlier count and epipolar errors are measured on them too)."""
    h, w = left.shape[:2]
    rig.check_size(w, h)
    matches = match_features(left, right)
    _, inl = epipolar_inliers(matches, w, h)
    rect = _from_rotations("calibrated", inl, (w, h), (rig.k1, rig.d1, rig.k2, rig.d2),
                           rig.r, rig.t)
    return _checked(rect)


def _essential(inl: Matches, k: np.ndarray) -> tuple[np.ndarray, np.ndarray, Matches] | None:
    e, mask = cv2.findEssentialMat(inl.left, inl.right, k, cv2.USAC_MAGSAC, 0.999, 1.0)
    if e is None or e.shape[0] < 3 or mask is None:
        return None
    # Far points (depth over 50 baselines, OpenCV's default cut) still vote for the pose.
    _, r, t, pose_mask, _ = cv2.recoverPose(e[:3], inl.left, inl.right, k, distanceThresh=1e6,
                                            mask=mask.copy())
    good = pose_mask.ravel() > 0
    if good.sum() < max(MIN_INLIERS, 0.6 * len(inl)):
        return None
    return r, t.ravel(), inl.subset(good)


def _opencv_homographies(f: np.ndarray, inl: Matches, size: tuple[int, int]
                         ) -> tuple[np.ndarray, np.ndarray] | None:
    """``cv2.stereoRectifyUncalibrated``, both homographies scaled and moved together so the
    rectified left view fills the frame (rows stay aligned); ``None`` when OpenCV's answer is
    degenerate (the line at infinity crossing the picture, a squashed view, rows not aligned),
    which happens for nearly rectified pairs."""
    w, h = size
    ok, h1, h2 = cv2.stereoRectifyUncalibrated(inl.left, inl.right, f, size)
    corners = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float64)
    for hm in (h1, h2) if ok else ():
        depth = np.c_[corners, np.ones(4)] @ hm[2]
        if not (np.all(depth > 0) or np.all(depth < 0)) or np.abs(depth).max() > 3 * np.abs(
                depth).min():
            return None
    if not ok:
        return None
    c = cv2.perspectiveTransform(corners.reshape(-1, 1, 2), h1).reshape(-1, 2)
    flip = np.array([-1.0 if c[1, 0] < c[0, 0] else 1.0, -1.0 if c[3, 1] < c[0, 1] else 1.0])
    lo, hi = (c * flip).min(0), (c * flip).max(0)
    scale = min(w / (hi[0] - lo[0]), h / (hi[1] - lo[1]))
    s = np.array([[scale * flip[0], 0, -scale * lo[0]], [0, scale * flip[1], -scale * lo[1]],
                  [0, 0, 1]])
    h1, h2 = s @ h1, s @ h2
    quad = cv2.perspectiveTransform(corners.reshape(-1, 1, 2), h1).reshape(-1, 2)
    if cv2.contourArea(quad.astype(np.float32)) < 0.25 * w * h:
        return None
    rl = cv2.perspectiveTransform(inl.left.reshape(-1, 1, 2), h1).reshape(-1, 2)
    rr = cv2.perspectiveTransform(inl.right.reshape(-1, 1, 2), h2).reshape(-1, 2)
    return (h1, h2) if _vertical_offset(rl, rr) <= MAX_AFTER_PX else None


def _homography_path(f: np.ndarray, inl: Matches, size: tuple[int, int],
                     fallback_fov_deg: float) -> Rectification:
    """The fundamental-matrix path (disparity only). When OpenCV's homographies are
    degenerate, rectifying rotations are taken from an essential matrix with a focal length
    assumed from ``fallback_fov_deg`` (horizontal FOV, degrees) instead; the output is still
    treated as disparity only, and a note says so."""
    w, h = size
    found = _opencv_homographies(f, inl, size)
    if found is None:
        focal = 0.5 * w / math.tan(math.radians(fallback_fov_deg) / 2)
        k = np.array([[focal, 0, w / 2 - 0.5], [0, focal, h / 2 - 0.5], [0, 0, 1]])
        pose = _essential(inl, k)
        if pose is None:
            raise InputError("This pair cannot be rectified: rectifying it would distort the "
                             "photos too much; move the camera sideways between the photos.")
        zero = np.zeros(5)
        rect = _from_rotations("fundamental", pose[2], size, (k, zero, k, zero), *pose[:2])
        rect.q, rect.r1 = None, None  # the focal is a guess: no depth from these rotations
        rect.notes.append("OpenCV's stereoRectifyUncalibrated gave a degenerate warp for this "
                          "nearly rectified pair, so its rectifying rotations come from an "
                          f"assumed {fallback_fov_deg:g} deg field of view (disparity only)")
        return rect
    h1, h2 = found
    maps = [_homography_maps(np.linalg.inv(hm), w, h) for hm in (h1, h2)]
    to_rect = cv2.perspectiveTransform(_grid(w, h), h1).reshape(h, w, 2).astype(np.float32)
    rl = cv2.perspectiveTransform(inl.left.reshape(-1, 1, 2), h1).reshape(-1, 2)
    rr = cv2.perspectiveTransform(inl.right.reshape(-1, 1, 2), h2).reshape(-1, 2)
    return Rectification("fundamental", maps[0], maps[1], to_rect, None, None, len(inl),
                         _disparity_range(rl[:, 0], rr[:, 0]),
                         _vertical_offset(inl.left, inl.right), _vertical_offset(rl, rr))


def _homography_maps(inv: np.ndarray, w: int, h: int) -> tuple[np.ndarray, np.ndarray]:
    src = cv2.perspectiveTransform(_grid(w, h), inv).reshape(h, w, 2).astype(np.float32)
    return np.ascontiguousarray(src[..., 0]), np.ascontiguousarray(src[..., 1])


def rectify_uncalibrated(left: np.ndarray, right: np.ndarray, focal_px: float | None = None,
                         *, fallback_fov_deg: float = 60.0) -> Rectification:
    """Rectify from features: the essential-matrix path when ``focal_px`` (pixels, principal
    point at the centre, both views) is given and consistent with the matches, else the
    fundamental-matrix path (``fallback_fov_deg``: see :func:`_homography_path`)."""
    h, w = left.shape[:2]
    if right.shape[:2] != (h, w):
        raise InputError(f"The left image is {w}x{h} but the right image is "
                         f"{right.shape[1]}x{right.shape[0]}: both photos must have the same "
                         "size.")
    f, inl = epipolar_inliers(match_features(left, right), w, h)
    check_motion(f, inl, w, h)
    notes: list[str] = []
    if focal_px:
        k = np.array([[focal_px, 0, w / 2 - 0.5], [0, focal_px, h / 2 - 0.5], [0, 0, 1]])
        pose = _essential(inl, k)
        if pose is not None:
            r, t, inl_e = pose
            zero = np.zeros(5)
            rect = _from_rotations("essential", inl_e, (w, h), (k, zero, k, zero), r, t)
            return _checked(rect)
        notes.append(f"the focal length {focal_px:.1f} px does not fit the matches (the "
                     "essential matrix failed), so the pair was rectified from the fundamental "
                     "matrix: disparity only")
    rect = _homography_path(f, inl, (w, h), fallback_fov_deg)
    rect.notes += notes
    return _checked(rect)


def _checked(rect: Rectification) -> Rectification:
    if not math.isfinite(rect.epipolar_after_px) or rect.epipolar_after_px > MAX_AFTER_PX:
        raise InputError(f"Rectification failed: matched features stay "
                         f"{rect.epipolar_after_px:.1f} px off their rows afterwards; check the "
                         "calibration, or rectify from features without it.")
    log.debug("rectified (%s): %d inliers, %.2f -> %.2f px", rect.method, rect.inliers,
              rect.epipolar_before_px, rect.epipolar_after_px)
    return rect


CHECK_MAX_SIDE = 640
"""The rectified-input check matches features on copies at most this large (it only needs
to tell offsets over a pixel from none, and runs on every rectified request)."""


def vertical_disparity(left: np.ndarray, right: np.ndarray) -> tuple[float, int] | None:
    """Median vertical offset (full-resolution pixels) of the fundamental-matrix inliers of a
    supposedly rectified pair and their count, or ``None`` when too few features match."""
    h, w = left.shape[:2]
    matches = match_features(left, right, max_side=CHECK_MAX_SIDE, max_features=2000)
    if len(matches) < MIN_INLIERS:
        return None
    thresh = max(1.0, max(w, h) / MATCH_MAX_SIDE)
    _, mask = cv2.findFundamentalMat(matches.left, matches.right, cv2.USAC_MAGSAC, thresh,
                                     0.999, 20000)
    if mask is None or int(mask.sum()) < MIN_INLIERS:
        return None
    inl = matches.subset(mask)
    return _vertical_offset(inl.left, inl.right), len(inl)


__all__ = ["Matches", "Rectification", "check_motion", "epipolar_inliers", "match_features",
           "rectify_calibrated", "rectify_uncalibrated", "vertical_disparity"]
