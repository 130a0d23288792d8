"""Standard monocular depth metrics (Eigen et al. 2014), alignment for relative models, crops.

Definitions over the evaluated pixels ``i`` (n of them), prediction ``p``, ground truth ``g``:
``abs_rel = mean(|p-g|/g)``, ``sq_rel = mean((p-g)^2/g)``, ``rmse = sqrt(mean((p-g)^2))``,
``rmse_log = sqrt(mean((ln p - ln g)^2))``, ``log10 = mean(|log10 p - log10 g|)``,
``delta_k = fraction of max(p/g, g/p) < 1.25^k``.
"""

from __future__ import annotations

import numpy as np

from depthweb.geometry.align import fit_scale_shift
from depthweb.types import DepthKind

METRIC_KEYS = ("abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "delta1", "delta2", "delta3")

NYU_EIGEN_CROP = (45, 471, 41, 601)  # rows [45, 471), cols [41, 601) of a 480x640 frame
KITTI_GARG_CROP = (0.40810811, 0.99189189, 0.03594771, 0.96405229)  # fractions of (H, W)


def depth_metrics(
    pred: np.ndarray,
    gt: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    min_depth: float = 1e-3,
) -> dict[str, float]:
    """The standard metrics of ``pred`` against ``gt`` (both metric depth, same shape).

    Evaluated pixels: ``mask`` (if given) and finite ``gt > 0`` and finite ``pred``. Predictions
    below ``min_depth`` are raised to it so logs are defined. Returns the metrics of
    :data:`METRIC_KEYS` plus ``n`` (number of pixels); all metrics are NaN when ``n == 0``.
    """
    pred = np.asarray(pred)
    gt = np.asarray(gt)
    if pred.shape != gt.shape:
        raise ValueError(f"pred shape {pred.shape} != gt shape {gt.shape}")
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(gt) & (gt > 0) & np.isfinite(pred)
    if mask is not None:
        ok &= mask.astype(bool, copy=False)
    n = int(ok.sum())
    if n == 0:
        return {**dict.fromkeys(METRIC_KEYS, float("nan")), "n": 0}
    p = np.maximum(pred[ok].astype(np.float64), min_depth)
    g = gt[ok].astype(np.float64)
    diff = p - g
    log_diff = np.log(p) - np.log(g)
    ratio = np.maximum(p / g, g / p)
    return {
        "abs_rel": float(np.mean(np.abs(diff) / g)),
        "sq_rel": float(np.mean(diff**2 / g)),
        "rmse": float(np.sqrt(np.mean(diff**2))),
        "rmse_log": float(np.sqrt(np.mean(log_diff**2))),
        "log10": float(np.mean(np.abs(log_diff)) / np.log(10.0)),
        "delta1": float(np.mean(ratio < 1.25)),
        "delta2": float(np.mean(ratio < 1.25**2)),
        "delta3": float(np.mean(ratio < 1.25**3)),
        "n": n,
    }


def align_prediction(
    pred: np.ndarray,
    kind: DepthKind | str,
    gt: np.ndarray,
    mask: np.ndarray,
    max_depth: float,
    *,
    min_depth: float = 1e-3,
) -> tuple[np.ndarray, float, float]:
    """Metric depth from ``pred`` for evaluation, capped to ``[min_depth, max_depth]``.

    ``relative_disparity``: least-squares scale and shift of ``pred`` to ``1 / gt`` over
    ``mask``, then inverted (a non-positive aligned disparity means "beyond max_depth").
    ``relative_depth``: least squares in depth space. ``metric_depth``: unchanged (scale 1,
    shift 0). Returns ``(depth (H, W) float32, scale, shift)``.
    """
    kind = DepthKind(kind)
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        fit_mask = mask & np.isfinite(gt) & (gt > min_depth) & (gt <= max_depth)
    if kind is DepthKind.METRIC_DEPTH:
        scale, shift, depth = 1.0, 0.0, pred.copy()
    elif kind is DepthKind.RELATIVE_DEPTH:
        scale, shift = _fit_or_mean(pred, gt, fit_mask)
        depth = scale * pred + shift
    else:
        with np.errstate(divide="ignore"):
            target = np.where(fit_mask, 1.0 / gt, np.nan)
        scale, shift = _fit_or_mean(pred, target, fit_mask)
        disparity = scale * pred + shift
        with np.errstate(divide="ignore", invalid="ignore"):
            depth = np.where(disparity > 0, 1.0 / disparity, max_depth)
        depth[~np.isfinite(pred)] = np.nan
    with np.errstate(invalid="ignore"):
        depth = np.clip(depth, min_depth, max_depth)
    return depth.astype(np.float32), float(scale), float(shift)


def _fit_or_mean(pred: np.ndarray, target: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """Least-squares scale and shift; for a (numerically) constant prediction the least-squares
    answer is scale 0 and the mean target as the shift. Raises ``ValueError`` only when no
    pixel is valid."""
    try:
        return fit_scale_shift(pred, target, mask)
    except ValueError:
        ok = mask & np.isfinite(pred) & np.isfinite(target)
        if not ok.any():
            raise
        return 0.0, float(np.mean(target[ok]))


def align_and_evaluate(
    pred: np.ndarray,
    kind: DepthKind | str,
    gt: np.ndarray,
    mask: np.ndarray,
    max_depth: float,
    *,
    min_depth: float = 1e-3,
) -> dict[str, float]:
    """Align (see :func:`align_prediction`) and evaluate on ``mask`` with gt in range.

    Returns :func:`depth_metrics` plus the fitted ``scale`` and ``shift``.
    """
    depth, scale, shift = align_prediction(pred, kind, gt, mask, max_depth, min_depth=min_depth)
    with np.errstate(invalid="ignore"):
        eval_mask = mask & (gt > min_depth) & (gt <= max_depth)
    result = depth_metrics(depth, gt, eval_mask, min_depth=min_depth)
    result.update(scale=scale, shift=shift)
    return result


def eigen_crop_mask(height: int, width: int) -> np.ndarray:
    """(H, W) bool: the NYU Eigen crop (rows 45:471, cols 41:601 at 480x640), scaled."""
    r0, r1, c0, c1 = NYU_EIGEN_CROP
    sy, sx = height / 480.0, width / 640.0
    mask = np.zeros((height, width), dtype=bool)
    mask[round(r0 * sy) : round(r1 * sy), round(c0 * sx) : round(c1 * sx)] = True
    return mask


def garg_crop_mask(height: int, width: int) -> np.ndarray:
    """(H, W) bool: the KITTI Garg crop (rows 40.8-99.2 %, cols 3.6-96.4 % of the frame)."""
    fr0, fr1, fc0, fc1 = KITTI_GARG_CROP
    mask = np.zeros((height, width), dtype=bool)
    mask[int(fr0 * height) : int(fr1 * height), int(fc0 * width) : int(fc1 * width)] = True
    return mask
