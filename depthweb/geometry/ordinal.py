"""Local, edge-aware ordinal corrections: "A is closer than B" changes the label near A only.

A pair moves the *segment that contains the closer point A* toward the camera, by the amount
that puts A in front of B with a margin, and nothing else:

- the change at pixel ``x`` is ``delta * w(x)`` with ``w(A) = 1`` and
  ``w(x) = s(|x - A|) * c(x) * l(x)``: ``s`` a smooth spatial window that is exactly 0 beyond
  ``radius_px`` (so pixels farther than ``radius_px`` from A never change), ``c`` the photo's
  colour similarity to A (the photo's edges stop the change) and ``l`` the label's similarity to
  A (the wrongly predicted segment moves as one);
- ``delta`` is chosen so that after the change A is closer than B by ``margin``; B moves by
  ``delta * w(B)``, so a B that looks like A's own surface (``w(B)`` near 1) cannot be ordered
  locally and the pair is refused with a sentence (ask for a global tilt instead);
- ``relative_disparity`` (bigger = closer) is raised, so no disparity turns negative; depth
  kinds are lowered and refused if any changed pixel would reach the camera.

The margin means something in the label's units: :data:`MARGIN_FRACTION` of the label's typical
magnitude (the larger of its 5-95 % range and its median absolute value over usable pixels), so
a flat label (range 0) still gets a real margin. Several pairs are applied in sweeps until all
hold (pairs that cannot all hold are refused as contradictory).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from depthweb.errors import InputError
from depthweb.types import DepthKind

MARGIN_FRACTION = 0.02
RADIUS_FRACTION = 0.08
MIN_RADIUS_PX = 8
COLOUR_SIGMA = 0.12  # photo values in [0, 1]
LABEL_SIGMA_FRACTION = 0.05  # of the label's typical magnitude
MIN_SEPARATION = 0.25  # 1 - w(B): below this A and B look like one surface
_SWEEPS = 30
_HILDRETH_SWEEPS = 5000


def typical_magnitude(depth: np.ndarray, usable: np.ndarray) -> float:
    """max(95th - 5th percentile, median |value|) of ``depth`` over ``usable`` (> 0)."""
    vals = depth[usable].astype(np.float64)
    if vals.size == 0:
        raise InputError("The label has no usable pixels to correct; unmask some.")
    lo, hi = np.percentile(vals, [5.0, 95.0])
    return max(float(hi - lo), float(np.median(np.abs(vals))), 1e-6)


def default_radius(shape: tuple[int, int]) -> int:
    """Pixels farther than this from the closer point never change (8 % of the longer side)."""
    return max(MIN_RADIUS_PX, round(RADIUS_FRACTION * max(shape)))


def _window(shape: tuple[int, int], row: int, col: int, radius: int) -> tuple[slice, slice]:
    h, w = shape
    return (slice(max(0, row - radius), min(h, row + radius + 1)),
            slice(max(0, col - radius), min(w, col + radius + 1)))


def segment_weight(
    depth: np.ndarray,
    usable: np.ndarray,
    guide: np.ndarray | None,
    point: tuple[int, int],
    radius: int,
    label_sigma: float,
) -> tuple[tuple[slice, slice], np.ndarray]:
    """``(window, w)``: the weight (window-sized float64, 1 at ``point`` (row, col), 0 beyond
    ``radius`` and on unusable pixels) of the segment around ``point``."""
    row, col = point
    win = _window(depth.shape, row, col, radius)
    rr, cc = np.mgrid[win[0], win[1]]
    r2 = ((rr - row) ** 2 + (cc - col) ** 2) / float(radius * radius)
    w = np.clip(1.0 - r2, 0.0, None) ** 2
    dl = depth[win].astype(np.float64) - float(depth[row, col])
    with np.errstate(invalid="ignore"):
        w *= np.exp(-0.5 * (dl / label_sigma) ** 2)
    if guide is not None:
        g = guide[win].astype(np.float64)
        diff = g - guide[row, col].astype(np.float64)
        dist2 = (diff**2).sum(axis=-1) if diff.ndim == 3 else diff**2
        w *= np.exp(-0.5 * dist2 / COLOUR_SIGMA**2)
    w = np.where(usable[win] & np.isfinite(w), w, 0.0)
    return win, w


def _point(shape: tuple[int, int], depth: np.ndarray, u: float, v: float) -> tuple[int, int]:
    h, w = shape
    if not (np.isfinite(u) and np.isfinite(v)):
        raise InputError(f"Point ({u}, {v}) needs a finite pixel column and row.")
    col, row = round(float(u)), round(float(v))
    if not (0 <= col < w and 0 <= row < h):
        raise InputError(f"Point ({col}, {row}) is outside the {w}x{h} image.")
    if not np.isfinite(float(depth[row, col])):
        raise InputError(f"Point ({col}, {row}) has no depth; move it onto a surface.")
    return row, col


def order_pairs_locally(
    depth: np.ndarray,
    kind: DepthKind,
    usable: np.ndarray,
    pairs: Sequence[tuple[float, float, float, float]],
    *,
    far: np.ndarray | None = None,
    guide: np.ndarray | None = None,
    margin: float | None = None,
    radius_px: int | None = None,
) -> np.ndarray:
    """The label ``depth`` (H, W) with every pair ``(ua, va, ub, vb)`` ("A closer than B",
    label pixels) ordered by ``margin`` (module docs); returns a new float32 (H, W) array.

    Args:
        usable: (H, W) bool, the pixels that may change (valid, not ignored, not far).
        far: (H, W) bool, pixels marked far (a B there needs no change; an A there is refused).
        guide: the photo at label size, (H, W, 3) or (H, W) floats in [0, 1], or None.

    Raises:
        InputError: a point off the image or without depth, A and B on one surface, pairs that
            contradict each other, or a depth that would reach the camera.
    """
    sign = 1.0 if kind is DepthKind.RELATIVE_DISPARITY else -1.0  # closeness = sign * value
    far = np.zeros(depth.shape, bool) if far is None else far
    typical = typical_magnitude(depth, usable)
    margin = MARGIN_FRACTION * typical if margin is None else float(margin)
    radius = default_radius(depth.shape) if radius_px is None else int(radius_px)
    label_sigma = LABEL_SIGMA_FRACTION * typical
    out = depth.astype(np.float64)
    pts = []
    for ua, va, ub, vb in pairs:
        a, b = _point(out.shape, out, ua, va), _point(out.shape, out, ub, vb)
        if a == b:
            raise InputError(f"Pair point A and B are the same pixel {a[::-1]}; pick two points.")
        if far[a]:
            raise InputError(f"Point {a[::-1]} is marked far, so it cannot be the closer one.")
        if not usable[a]:
            raise InputError(f"Point {a[::-1]} is masked; unmask it or pick another point.")
        if not far[b]:  # far is behind everything: nothing to order
            pts.append((a, b))
    for _ in range(_SWEEPS):
        moved = False
        for a, b in pts:
            gap = sign * (out[a] - out[b])
            if gap >= margin * (1.0 - 1e-6):
                continue
            win, w = segment_weight(out, usable, guide, a, radius, label_sigma)
            wb = 0.0
            if win[0].start <= b[0] < win[0].stop and win[1].start <= b[1] < win[1].stop:
                wb = float(w[b[0] - win[0].start, b[1] - win[1].start])
            if 1.0 - wb < MIN_SEPARATION:
                raise InputError(
                    f"Points A {a[::-1]} and B {b[::-1]} look like one surface, so a local "
                    "correction cannot order them; move B onto the farther surface or ask "
                    "for a global tilt."
                )
            delta = (margin - gap) * (1.0 + 1e-6) / (1.0 - wb)
            out[win] += sign * delta * w
            moved = True
        if not moved:
            break
    else:
        raise InputError(
            "These 'closer than' pairs contradict each other; remove one, or fix the region "
            "with a plane or far fill instead."
        )
    result = out.astype(np.float32)
    if kind is not DepthKind.RELATIVE_DISPARITY and np.any(result[usable] <= 0):
        raise InputError(
            "Ordering these pairs would push part of the depth map behind the camera; "
            "remove a pair or fix the region with a plane fill instead."
        )
    return result


# --------------------------------------------------------------------- global tilt
def _ramp(shape: tuple[int, int], fit_px: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centred, scaled pixel coordinates: ``(u_n, v_n)`` (H, W) each, with zero mean over the
    fit pixels and the longer image side as unit."""
    h, w = shape
    side = float(max(h, w))
    v, u = np.indices((h, w), dtype=np.float64)
    return (u - u[fit_px].mean()) / side, (v - v[fit_px].mean()) / side


def _hildreth(q: np.ndarray, b: np.ndarray) -> np.ndarray:
    """argmin_{lam >= 0} 0.5 lam' Q lam - b' lam by coordinate descent (Hildreth 1957)."""
    lam = np.zeros(b.size)
    for _ in range(_HILDRETH_SWEEPS):
        biggest = 0.0
        for k in range(b.size):
            new = max(0.0, lam[k] + (b[k] - float(q[k] @ lam)) / q[k, k])
            biggest = max(biggest, abs(new - lam[k]))
            lam[k] = new
        if biggest <= 1e-13 * (1.0 + float(np.abs(lam).max())):
            break
    return lam


def _tilt_constraints(depth, kind, far, pairs, ramp, margin) -> tuple[np.ndarray, np.ndarray]:
    """``(G (K, 2), need (K,))``: pair k is in order with ``margin`` when
    ``G[k] . (a, b) >= need[k]``."""
    sign = -1.0 if kind is DepthKind.RELATIVE_DISPARITY else 1.0
    rows, need = [], []
    for ua, va, ub, vb in pairs:
        a, b = _point(depth.shape, depth, ua, va), _point(depth.shape, depth, ub, vb)
        if a == b:
            raise InputError(f"Pair point A and B are the same pixel {a[::-1]}; pick two points.")
        if far[a]:
            raise InputError(f"Point {a[::-1]} is marked far, so it cannot be the closer one.")
        if far[b]:
            continue  # far is behind everything: nothing to fit
        rows.append([sign * (ramp[0][b] - ramp[0][a]), sign * (ramp[1][b] - ramp[1][a])])
        need.append(margin - sign * float(depth[b] - depth[a]))
    return np.array(rows, dtype=np.float64).reshape(-1, 2), np.array(need, dtype=np.float64)


def tilt_pairs(
    depth: np.ndarray,
    kind: DepthKind,
    fit_px: np.ndarray,
    far: np.ndarray,
    pairs: Sequence[tuple[float, float, float, float]],
    margin: float,
) -> np.ndarray | None:
    """The smallest global tilt ``x' = x + a u_n + b v_n`` (least mean squared change over
    ``fit_px``) that orders every pair by ``margin``; float32 (H, W), or None when the pairs
    already hold. Only on the reviewer's request: it changes every pixel.

    Raises:
        InputError: contradictory pairs, a degenerate label, or depth behind the camera.
    """
    if fit_px.sum() < 3:
        raise InputError("The label has too few valid pixels to re-fit; unmask some.")
    ramp = _ramp(depth.shape, fit_px)
    g, need = _tilt_constraints(depth, kind, far, pairs, ramp, margin)
    if g.size == 0 or np.all(need <= 0):
        return None
    r = np.stack([ramp[0][fit_px], ramp[1][fit_px]], axis=1)
    hess = r.T @ r / r.shape[0]  # mean squared change of the label per unit (a, b)
    if np.linalg.cond(hess) > 1e12:
        raise InputError("The label's valid pixels lie on a line; unmask more of the image.")
    hinv = np.linalg.inv(hess)
    tilt = hinv @ g.T @ _hildreth(g @ hinv @ g.T, need)
    if np.any(g @ tilt < need - 1e-9 * margin):
        raise InputError(
            "These 'closer than' pairs contradict each other; remove one, or fix the region "
            "with a plane or far fill instead."
        )
    new = (depth.astype(np.float64) + tilt[0] * ramp[0] + tilt[1] * ramp[1]).astype(np.float32)
    if kind is not DepthKind.RELATIVE_DISPARITY and np.any(new[fit_px] <= 0):
        raise InputError(
            "Ordering these pairs would push part of the depth map behind the camera; "
            "remove a pair or fix the region with a plane fill instead."
        )
    return new
