"""Label corrections applied to a depth map: ignore mask, anchor and ordinal re-fits, region fills.

A :class:`LabelMap` is a label in its native space (``kind``): depth for ``metric_depth`` and
``relative_depth``, inverse depth for ``relative_disparity``; NaN = invalid. It carries an
``ignore`` mask (pixels a reviewer excluded: sky, glass, mirrors, people) and a ``far`` mask
(pixels marked "far"). Every correction takes a label and returns a new one (inputs are never
modified); applying the same corrections in the same order always gives the same label.

- **mask**: union / replace / subtract a painted region into the ignore mask; depth unchanged.
- **anchors**: a few pixels of known metric depth re-fit scale and shift in the native space
  (:func:`depthweb.geometry.align.align_to_anchors`); the label becomes ``metric_depth``. Under
  rules 2 a disparity label needs two anchors (one cannot fix the shift) and a fit that leaves
  usable pixels without a positive depth is refused.
- **ordinal**: pairs "A is closer than B", by default a *local* edge-aware change around each
  closer point (:mod:`depthweb.geometry.ordinal`: pixels beyond its radius never change, the
  pair ends ordered by a margin in the label's units, no disparity turns negative); a global
  tilt ``x' = x + a u_n + b v_n`` (the smallest that orders every pair) only when asked for
  (``payload["mode"] = "tilt"``) or for revisions made under rules 1.
- **plane fill**: the border ring of a painted region (``ring_px`` wide, valid, not ignored, not
  far) is back-projected with the intrinsics and a 3D plane is fitted to it (total least squares);
  the region's depth becomes the plane's intersection with each pixel's ray. For
  ``relative_disparity`` the equivalent fit is used: inverse depth of a plane is an affine
  function of the pixel coordinates, and stays one under the unknown scale and shift, so an
  affine fit in disparity is exact where a back-projection of ``1 / x`` would not be.
- **far fill**: the region is marked far: disparity 0, or for depth kinds the largest depth of
  the rest of the label ("as far as anything in the scene"), and it stays so after later re-fits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from depthweb.errors import InputError
from depthweb.geometry.align import align_to_anchors
from depthweb.geometry.backproject import pixel_rays
from depthweb.geometry.ordinal import (
    MARGIN_FRACTION,
    order_pairs_locally,
    tilt_pairs,
    typical_magnitude,
)
from depthweb.geometry.rules_v1 import anchors_v1
from depthweb.types import DepthKind, Intrinsics

MASK_MODES = ("union", "replace", "subtract")
DEFAULT_RING_PX = 3
DEFAULT_MARGIN_FRACTION = 0.01  # rules 1 (global tilt) only
ORDINAL_MODES = ("local", "tilt")
RULES_VERSION = 2
"""The version of the correction rules new corrections are made with (stored with each
revision; a label recomputes with the rules its revisions were made with):

- 1: ordinal pairs are always a global tilt (margin 1 % of the 5-95 % range); anchors fit
  scale (one anchor, shift 0) or scale and shift with no checks on the result.
- 2: ordinal pairs are local and edge-aware unless a tilt is asked for (margin 2 % of the
  label's typical magnitude); anchors follow :func:`refit_anchors`'s refusal rules.
"""


@dataclass(frozen=True)
class LabelMap:
    """A label: ``depth`` float32 (H, W) in ``kind`` space (NaN invalid), ``ignore`` and ``far``
    bool (H, W)."""

    depth: np.ndarray
    kind: DepthKind
    ignore: np.ndarray
    far: np.ndarray

    @classmethod
    def from_prediction(cls, depth: np.ndarray, kind: DepthKind | str, *,
                        copy: bool = True) -> LabelMap:
        """A teacher prediction (H, W) as a label with nothing ignored and nothing far.
        ``copy=False`` keeps a float32 ``depth`` as it is (e.g. a read-only view of the file's
        bytes: corrections never write into a label's arrays, they make new ones)."""
        depth = np.asarray(depth, dtype=np.float32)
        if depth.ndim != 2:
            raise ValueError(f"depth must be (H, W), got shape {depth.shape}")
        return cls(depth.copy() if copy else depth, DepthKind(kind),
                   np.zeros(depth.shape, dtype=bool), np.zeros(depth.shape, dtype=bool))

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.depth.shape[0]), int(self.depth.shape[1]))

    def valid(self) -> np.ndarray:
        """(H, W) bool: finite (and for depth kinds positive) values."""
        with np.errstate(invalid="ignore"):
            ok = np.isfinite(self.depth)
            if self.kind is not DepthKind.RELATIVE_DISPARITY:
                ok &= self.depth > 0
        return ok

    def equals(self, other: LabelMap) -> bool:
        """Bit-identical arrays (NaN equal to NaN) and the same kind."""
        return (
            self.kind == other.kind
            and np.array_equal(self.depth, other.depth, equal_nan=True)
            and np.array_equal(self.ignore, other.ignore)
            and np.array_equal(self.far, other.far)
        )


def _check_region(label: LabelMap, region: np.ndarray | None, what: str) -> np.ndarray:
    if region is None:
        raise InputError(f"A {what} needs a painted region; paint one first.")
    region = np.asarray(region)
    if region.shape != label.shape:
        raise InputError(
            f"The painted region is {region.shape[1]}x{region.shape[0]} but the label is "
            f"{label.shape[1]}x{label.shape[0]}; paint on the shown image."
        )
    region = region.astype(bool)
    if not region.any():
        raise InputError(f"The painted region for the {what} is empty; paint some pixels.")
    return region


def far_value(depth: np.ndarray, kind: DepthKind, usable: np.ndarray) -> float:
    """The value "far" takes: 0 disparity, or the largest positive depth among ``usable``."""
    if kind is DepthKind.RELATIVE_DISPARITY:
        return 0.0
    with np.errstate(invalid="ignore"):
        vals = depth[usable & np.isfinite(depth) & (depth > 0)]
    if vals.size == 0:
        raise InputError("Nothing outside the far region has a depth; mark a smaller region.")
    return float(vals.max())


def _with_far(label: LabelMap) -> LabelMap:
    """Re-assert the far region's value after an operation changed the rest of the label."""
    if not label.far.any():
        return label
    depth = label.depth.copy()
    depth[label.far] = far_value(label.depth, label.kind, ~label.far)
    return replace(label, depth=depth)


# --------------------------------------------------------------------------------- mask
def apply_mask(label: LabelMap, region: np.ndarray, mode: str = "union") -> LabelMap:
    """Ignore mask update: ``union`` adds the region, ``replace`` sets it, ``subtract`` erases.

    ``replace`` accepts an empty region (clears the mask).
    """
    if mode not in MASK_MODES:
        raise InputError(f"Unknown mask mode {mode!r}; use one of {', '.join(MASK_MODES)}.")
    if mode == "replace" and region is not None and not np.asarray(region).any():
        return replace(label, ignore=np.zeros(label.shape, dtype=bool))
    region = _check_region(label, region, "mask")
    if mode == "union":
        ignore = label.ignore | region
    elif mode == "subtract":
        ignore = label.ignore & ~region
    else:
        ignore = region.copy()
    return replace(label, ignore=ignore)


# ------------------------------------------------------------------------------ anchors
def parse_anchors(payload: Mapping[str, Any]) -> list[tuple[float, float, float]]:
    """``payload["anchors"]``: ``[u, v, depth_m]`` lists or ``{"u", "v", "depth"}`` dicts."""
    out = []
    for item in payload.get("anchors") or []:
        try:
            if isinstance(item, Mapping):
                out.append((float(item["u"]), float(item["v"]), float(item["depth"])))
            else:
                u, v, d = item
                out.append((float(u), float(v), float(d)))
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(
                f"Anchor {item!r} is not (column, row, depth in metres); re-enter it."
            ) from exc
    if not out:
        raise InputError("Add at least one scale anchor (a pixel and its depth) before saving.")
    return out


def refit_anchors(
    label: LabelMap,
    anchors: Sequence[tuple[float, float, float]],
    *,
    rules_version: int = RULES_VERSION,
) -> LabelMap:
    """Scale (and shift, with 2+ anchors) fitted in the native space; returns metric depth.

    Rules 2 refuse (InputError) one anchor on a disparity label, and a fit that leaves more
    than 1 % of the usable pixels without a positive, finite depth.
    """
    not_judged = label.ignore | label.far
    usable = label.valid() & ~not_judged
    if (rules_version >= 2 and label.kind is DepthKind.RELATIVE_DISPARITY
            and len(anchors) < 2):
        raise InputError(
            "One anchor cannot fix both the scale and the shift of a disparity label; add a "
            "second anchor at a different depth."
        )
    if rules_version < 2:
        depth = anchors_v1(label.depth, label.kind, list(anchors))
    else:
        judged = np.isfinite(label.depth) & ~not_judged  # not judged: far/ignored
        depth = align_to_anchors(label.depth, label.kind, list(anchors),
                                 valid=judged).depth.astype(np.float32, copy=False)
    n_usable = int(np.count_nonzero(usable)) if rules_version >= 2 else 0
    if n_usable:
        with np.errstate(invalid="ignore"):
            kept = int(np.count_nonzero(usable & (depth > 0) & (depth < np.inf)))  # NaN: not
        lost = n_usable - kept
        if lost > 0.01 * n_usable:
            raise InputError(
                f"These anchors would put {100.0 * lost / n_usable:.0f} % of the "
                "label behind the camera or at infinity; check their depths or add an anchor."
            )
    out = LabelMap(depth, DepthKind.METRIC_DEPTH, label.ignore.copy(), label.far.copy())
    return _with_far(out)


# ------------------------------------------------------------------------------ ordinal
def parse_pairs(payload: Mapping[str, Any]) -> list[tuple[float, float, float, float]]:
    """``payload["pairs"]``: ``[ua, va, ub, vb]`` ("A at (ua, va) is closer than B") or
    ``{"closer": [u, v], "farther": [u, v]}``."""
    out = []
    for item in payload.get("pairs") or []:
        try:
            if isinstance(item, Mapping):
                (ua, va), (ub, vb) = item["closer"], item["farther"]
            else:
                ua, va, ub, vb = item
            out.append((float(ua), float(va), float(ub), float(vb)))
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(
                f"Pair {item!r} is not (closer column, row, farther column, row); re-enter it."
            ) from exc
    if not out:
        raise InputError("Add at least one 'A is closer than B' pair before saving.")
    return out


def refit_ordinal(
    label: LabelMap,
    pairs: Sequence[tuple[float, float, float, float]],
    *,
    margin: float | None = None,
    mode: str = "local",
    guide: np.ndarray | None = None,
    radius_px: int | None = None,
    rules_version: int = RULES_VERSION,
) -> LabelMap:
    """Order every pair "A closer than B" (module docs).

    ``mode="local"`` (rules 2+): :func:`depthweb.geometry.ordinal.order_pairs_locally` moves the
    segment around each closer point (``guide``: the photo at label size, floats in [0, 1]);
    ``mode="tilt"``: the smallest global tilt (rules 1 always tilt, with the old margin: 1 % of
    the 5-95 % range).
    """
    if mode not in ORDINAL_MODES:
        raise InputError(f"Unknown ordinal mode {mode!r}; use one of {', '.join(ORDINAL_MODES)}.")
    fit_px = label.valid() & ~label.ignore & ~label.far
    if fit_px.sum() < 3:
        raise InputError("The label has too few valid pixels to re-fit; unmask some.")
    if rules_version < 2:
        if margin is None:
            lo, hi = np.percentile(label.depth[fit_px], [5.0, 95.0])
            margin = DEFAULT_MARGIN_FRACTION * max(float(hi - lo), 1e-6)
        mode = "tilt"
    elif margin is None:
        margin = MARGIN_FRACTION * typical_magnitude(label.depth, fit_px)
    if mode == "tilt":
        new = tilt_pairs(label.depth, label.kind, fit_px, label.far, pairs, margin)
        return label if new is None else _with_far(replace(label, depth=new))
    new = order_pairs_locally(label.depth, label.kind, fit_px, pairs, far=label.far,
                              guide=guide, margin=margin, radius_px=radius_px)
    return _with_far(replace(label, depth=new))


# ---------------------------------------------------------------------------- plane fill
def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation of (H, W) bool by a (2 radius + 1) square."""
    out = mask.astype(bool)
    h, w = out.shape
    for _ in range(max(0, int(radius))):
        padded, out = np.pad(out, 1), np.zeros_like(out)
        for dy in range(3):
            for dx in range(3):
                out |= padded[dy:dy + h, dx:dx + w]
    return out


def border_ring(label: LabelMap, region: np.ndarray, ring_px: int = DEFAULT_RING_PX) -> np.ndarray:
    """(H, W) bool: pixels within ``ring_px`` of ``region``, outside it, usable for a fit."""
    return dilate(region, ring_px) & ~region & label.valid() & ~label.ignore & ~label.far


def _plane_depth(
    label: LabelMap, ring: np.ndarray, region: np.ndarray, intrinsics: Intrinsics
) -> np.ndarray:
    """Depth of the total-least-squares plane through the back-projected ring, along each
    region pixel's ray (NaN where the ray misses the plane)."""
    h, w = label.shape
    xs, ys = pixel_rays(h, w, intrinsics)
    rr, rc = np.nonzero(ring)
    z = label.depth[rr, rc].astype(np.float64)
    pts = np.stack([z * xs[rc], z * ys[rr], z], axis=1)
    centroid = pts.mean(axis=0)
    _, sing, vt = np.linalg.svd(pts - centroid, full_matrices=False)
    if sing[1] <= 1e-9 * max(sing[0], 1e-30):
        raise InputError("The region's border is a line, not a surface; paint a wider region.")
    normal = vt[2]
    qr, qc = np.nonzero(region)
    dots = normal[0] * xs[qc] + normal[1] * ys[qr] + normal[2]
    with np.errstate(divide="ignore", invalid="ignore"):
        depth = float(normal @ centroid) / dots
    return np.where(np.isfinite(depth) & (depth > 0), depth, np.nan)


def _affine_disparity(label: LabelMap, ring: np.ndarray, region: np.ndarray) -> np.ndarray:
    """Least-squares ``a u + b v + c`` through the ring's disparities, at the region's pixels."""
    rr, rc = np.nonzero(ring)
    design = np.stack([rc, rr, np.ones_like(rr)], axis=1).astype(np.float64)
    coef, _, rank, _ = np.linalg.lstsq(design, label.depth[rr, rc].astype(np.float64), rcond=None)
    if rank < 3:
        raise InputError("The region's border is a line, not a surface; paint a wider region.")
    qr, qc = np.nonzero(region)
    return coef[0] * qc + coef[1] * qr + coef[2]


def plane_fill(
    label: LabelMap,
    region: np.ndarray,
    intrinsics: Intrinsics,
    *,
    ring_px: int = DEFAULT_RING_PX,
) -> LabelMap:
    """Replace ``region`` by the plane fitted to its border ring (see the module docstring).

    The region is no longer ignored or far afterwards.
    """
    region = _check_region(label, region, "plane fill")
    ring = border_ring(label, region, ring_px)
    if ring.sum() < 3:
        raise InputError(
            "The painted region has no usable border (it touches only invalid, masked or far "
            "pixels); paint a region surrounded by the surface you want to extend."
        )
    if label.kind is DepthKind.RELATIVE_DISPARITY:
        values = _affine_disparity(label, ring, region)
    else:
        values = _plane_depth(label, ring, region, intrinsics)
    depth = label.depth.copy()
    depth[region] = values.astype(np.float32)
    out = LabelMap(depth, label.kind, label.ignore & ~region, label.far & ~region)
    return _with_far(out)


# ----------------------------------------------------------------------------- far fill
def far_fill(label: LabelMap, region: np.ndarray) -> LabelMap:
    """Mark ``region`` far (disparity 0, or the largest depth of the rest); no longer ignored."""
    region = _check_region(label, region, "far fill")
    if region.all():
        raise InputError("The far region covers the whole image; paint only the far part.")
    far = label.far | region
    far_value(label.depth, label.kind, ~far)  # raises when nothing else has a depth
    return _with_far(LabelMap(label.depth.copy(), label.kind, label.ignore & ~region, far))


# ------------------------------------------------------------------------------ dispatch
def apply_correction(
    label: LabelMap,
    action: str,
    payload: Mapping[str, Any] | None,
    region: np.ndarray | None,
    intrinsics: Intrinsics | None,
    *,
    guide: np.ndarray | None = None,
    rules_version: int = RULES_VERSION,
) -> LabelMap:
    """Apply one stored correction (``action`` = mask, anchors, ordinal, plane_fill, far_fill)
    with the rules it was made with (``rules_version``); ``guide`` is the photo at label size
    (floats in [0, 1]) for local ordinal pairs; ``intrinsics`` are needed by plane fills
    only."""
    payload = payload or {}
    if rules_version < 1 or rules_version > RULES_VERSION:
        raise InputError(f"Correction rules version {rules_version} is unknown here.")
    if action == "mask":
        return apply_mask(label, region, str(payload.get("mode", "union")))
    if action == "anchors":
        return refit_anchors(label, parse_anchors(payload), rules_version=rules_version)
    if action == "ordinal":
        margin = payload.get("margin")
        return refit_ordinal(label, parse_pairs(payload),
                             margin=None if margin is None else float(margin),
                             mode=str(payload.get("mode", "local")), guide=guide,
                             rules_version=rules_version)
    if action == "plane_fill":
        if intrinsics is None:
            raise InputError("A plane fill needs the label's intrinsics.")
        return plane_fill(label, region, intrinsics,
                          ring_px=int(payload.get("ring_px", DEFAULT_RING_PX)))
    if action == "far_fill":
        return far_fill(label, region)
    raise InputError(f"{action!r} is not a label correction.")
