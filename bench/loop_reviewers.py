"""Simulated reviewers for the loop benchmark: they see the teacher's label and (unlike real
people) the exact depth, and act through the review service the web app calls.

Training is scale-and-shift invariant, so only corrections that change a label's *shape* can
change what a student learns. Per image, within :class:`Budget`:

1. **reject** when the teacher is far off: the label's AbsRel after the best scale and shift
   (in disparity, against the true disparity, sky excluded) is over ``reject_absrel``;
2. **far fill** the sky (true depth infinite), when there is any: one painted region;
3. **ignore mask** on the worst regions: ``tile`` x ``tile`` tiles whose aligned relative error
   is over ``mask_error``, worst first, at most ``mask_fraction`` of the image, one region;
4. **plane fill** up to ``planes`` blocks where the true disparity is a plane (affine in the
   pixel, residual under 1 %) and the label is off; the reviewer looks at the result and
   **undoes** it when it made the region worse (as a person would after seeing it);
5. **ordinal pairs**: up to ``pairs`` "A is closer than B" pairs between nearby pixels
   (``pair_radius``) whose order the label has wrong, saved once (local mode);
6. **approve**.

Everything goes through :mod:`depthweb.services.review.session` (``next_outcome``,
``save_region``, ``save_pairs``, ``undo``, ``approve``, ``reject``): the same calls, checks and
revisions as a person in the browser. The reviewer reads the label it is shown with
:func:`~depthweb.services.review.labels.current_label` (read only).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import PurePath

import numpy as np

from depthweb.errors import InputError
from depthweb.geometry.align import fit_scale_shift

MAX_DEPTH = 80.0


@dataclass(frozen=True)
class Budget:
    """What one simulated reviewer may do to one image (the stated review budget)."""

    reject_absrel: float = 0.5
    mask_error: float = 0.5
    mask_fraction: float = 0.15
    tile: int = 8
    planes: int = 1
    plane_block: int = 16
    pairs: int = 8
    pair_radius: int = 12
    far: bool = True


@dataclass
class Plan:
    """The corrections a reviewer decided on for one label (label pixels)."""

    absrel: float
    reject: bool = False
    far: np.ndarray | None = None
    mask: np.ndarray | None = None
    planes: list[np.ndarray] = field(default_factory=list)
    pairs: list[list[int]] = field(default_factory=list)


def true_disparity(depth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(disparity (H, W), 0 for sky; valid bool (H, W): finite depth in (0, MAX_DEPTH])."""
    valid = np.isfinite(depth) & (depth > 0) & (depth <= MAX_DEPTH)
    disp = np.zeros(depth.shape, np.float64)
    disp[valid] = 1.0 / depth[valid]
    return disp, valid


def aligned_error(label: np.ndarray, depth: np.ndarray) -> tuple[np.ndarray, float]:
    """Per-pixel relative depth error (H, W) (NaN where not judged) of a disparity label after
    its best scale and shift, and its mean (the image's AbsRel)."""
    disp, valid = true_disparity(depth)
    ok = valid & np.isfinite(label)
    err = np.full(depth.shape, np.nan)
    if ok.sum() < 2:
        return err, float("nan")
    s, b = fit_scale_shift(label.astype(np.float64), disp, ok)
    lo = 1.0 / MAX_DEPTH
    pred = 1.0 / np.clip(s * label[ok] + b, lo, None)
    err[ok] = np.abs(pred - depth[ok]) / depth[ok]
    return err, float(np.mean(err[ok]))


def _tiles(shape: tuple[int, int], t: int):
    h, w = shape
    for y in range(0, h - t + 1, t):
        for x in range(0, w - t + 1, t):
            yield slice(y, y + t), slice(x, x + t)


def worst_regions(err: np.ndarray, budget: Budget) -> np.ndarray | None:
    """Union of the worst tiles (mean error over ``mask_error``), at most ``mask_fraction``."""
    scored = []
    for sl in _tiles(err.shape, budget.tile):
        e = err[sl]
        if np.isfinite(e).mean() > 0.5:
            scored.append((float(np.nanmean(e)), sl))
    scored.sort(key=lambda p: -p[0])
    limit = int(budget.mask_fraction * err.size)
    region = np.zeros(err.shape, bool)
    for score, sl in scored:
        if score <= budget.mask_error or region.sum() + budget.tile ** 2 > limit:
            break
        region[sl] = True
    return region if region.any() else None


def _affine_residual(disp: np.ndarray, mask: np.ndarray) -> float:
    ys, xs = np.nonzero(mask)
    a = np.stack([xs, ys, np.ones_like(xs)], 1).astype(np.float64)
    z = disp[mask]
    coef, *_ = np.linalg.lstsq(a, z, rcond=None)
    return float(np.max(np.abs(a @ coef - z)) / max(float(np.mean(z)), 1e-9))


def plane_regions(err: np.ndarray, depth: np.ndarray, taken: np.ndarray,
                  budget: Budget) -> list[np.ndarray]:
    """Blocks (with a 3-pixel ring) on one true plane where the label is off, worst first."""
    disp, valid = true_disparity(depth)
    b, ring = budget.plane_block, 3
    h, w = depth.shape
    found = []
    for y in range(ring, h - b - ring + 1, b // 2):
        for x in range(ring, w - b - ring + 1, b // 2):
            inner = (slice(y, y + b), slice(x, x + b))
            outer = np.zeros(depth.shape, bool)
            outer[y - ring:y + b + ring, x - ring:x + b + ring] = True
            if not valid[outer].all() or taken[outer].any():
                continue
            e = float(np.mean(err[inner]))
            if e > 0.1 and _affine_residual(disp, outer) < 0.01:
                region = np.zeros(depth.shape, bool)
                region[inner] = True
                found.append((e, region))
    found.sort(key=lambda p: -p[0])
    return [r for _, r in found[: budget.planes]]


def wrong_pairs(label: np.ndarray, depth: np.ndarray, taken: np.ndarray, budget: Budget,
                rng: np.random.Generator) -> list[list[int]]:
    """Up to ``pairs`` rows [closer col, row, farther col, row] the label orders wrongly."""
    _, valid = true_disparity(depth)
    ok = valid & np.isfinite(label) & ~taken
    ys, xs = np.nonzero(ok)
    rows: list[list[int]] = []
    if len(ys) < 2:
        return rows
    h, w = depth.shape
    for _ in range(40 * budget.pairs):
        if len(rows) >= budget.pairs:
            break
        k = int(rng.integers(len(ys)))
        ya, xa = int(ys[k]), int(xs[k])
        yb = int(np.clip(ya + rng.integers(-budget.pair_radius, budget.pair_radius + 1), 0, h - 1))
        xb = int(np.clip(xa + rng.integers(-budget.pair_radius, budget.pair_radius + 1), 0, w - 1))
        if not ok[yb, xb] or max(depth[ya, xa], depth[yb, xb]) < 1.15 * min(depth[ya, xa],
                                                                            depth[yb, xb]):
            continue
        (cy, cx), (fy, fx) = ((ya, xa), (yb, xb)) if depth[ya, xa] < depth[yb, xb] \
            else ((yb, xb), (ya, xa))
        if label[cy, cx] <= label[fy, fx]:  # disparity: the closer point should be larger
            rows.append([cx, cy, fx, fy])
    return rows


def plan_review(label: np.ndarray, depth: np.ndarray, budget: Budget,
                rng: np.random.Generator) -> Plan:
    """What a reviewer with the true ``depth`` (H, W; inf = sky) does to a disparity ``label``."""
    err, absrel = aligned_error(label, depth)
    plan = Plan(absrel)
    if not np.isfinite(absrel) or absrel > budget.reject_absrel:
        plan.reject = True
        return plan
    sky = ~np.isfinite(depth)
    if budget.far and sky.mean() > 0.005:
        plan.far = sky
    plan.mask = worst_regions(err, budget)
    taken = sky | (plan.mask if plan.mask is not None else False)
    plan.planes = plane_regions(err, depth, taken, budget)
    for region in plan.planes:
        taken = taken | region
    plan.pairs = wrong_pairs(label, depth, taken, budget, rng)
    return plan


def _region_error(label: np.ndarray, depth: np.ndarray, region: np.ndarray) -> float:
    err, _ = aligned_error(label, depth)
    return float(np.nanmean(err[region]))


class Reviewer:
    """One simulated person: claims tasks of ``dataset`` and reviews them by :func:`plan_review`
    through the review service. ``counts`` tallies the actions saved (and refused/undone)."""

    def __init__(self, ctx, username: str, dataset: str, truth: dict[str, np.ndarray],
                 budget: Budget, seed: int = 0) -> None:
        self.ctx, self.username, self.dataset = ctx, username, dataset
        self.truth, self.budget = truth, budget
        self.rng = np.random.default_rng(seed)
        self.counts: Counter[str] = Counter()
        self.absrel: list[float] = []

    def _label(self, task_id: int) -> np.ndarray:
        from depthweb.services.review.labels import current_label

        with self.ctx.session(readonly=True) as s:
            return current_label(s, task_id, store=self.ctx.store).depth

    def review_next(self) -> bool:
        """Review the next task in the queue; False when the queue is empty."""
        from depthweb.services.review import session as review

        page = review.next_outcome(self.ctx, self.username, dataset=self.dataset).page
        if page is None:
            return False
        depth = self.truth[PurePath(page.image_name).stem]
        label = self._label(page.task_id)
        plan = plan_review(label, depth, self.budget, self.rng)
        self.absrel.append(plan.absrel)
        tid, version = page.task_id, page.version
        if plan.reject:
            review.reject(self.ctx, self.username, tid, version, ["other"],
                          note=f"simulated: aligned AbsRel {plan.absrel:.2f}")
            self.counts["reject"] += 1
            return True
        for kind, region in (("far", plan.far), ("mask", plan.mask)):
            if region is not None:
                version = self._save(kind, lambda r=region, k=kind, v=version: review.save_region(
                    self.ctx, self.username, tid, v, r, k), version)
        for region in plan.planes:
            before = _region_error(self._label(tid), depth, region)
            new = self._save("plane", lambda r=region, v=version: review.save_region(
                self.ctx, self.username, tid, v, r, "plane"), version)
            if new != version and _region_error(self._label(tid), depth, region) > before:
                new = review.undo(self.ctx, self.username, tid, new)
                self.counts["plane undone"] += 1
            version = new
        if plan.pairs:
            version = self._save("pairs", lambda v=version: review.save_pairs(
                self.ctx, self.username, tid, v, plan.pairs), version)
            self.counts["pair"] += len(plan.pairs) - 1  # _save counted the save once
        review.approve(self.ctx, self.username, tid, version)
        self.counts["approve"] += 1
        return True

    def _save(self, kind: str, call, version: int) -> int:
        try:
            new = call()
        except InputError:  # e.g. a plane the label's border cannot fit: a person moves on
            self.counts[f"{kind} refused"] += 1
            return version
        self.counts["pair" if kind == "pairs" else kind] += 1
        return new
