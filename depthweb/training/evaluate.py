"""Evaluating depth predictions on NYU/KITTI-style folders, next to trivial baselines.

Protocol (issue 5): relative predictions are aligned by least-squares scale and shift in their own
space (disparity for ``relative_disparity``, depth for ``relative_depth``), turned into depth
capped at the dataset's maximum (10 m NYU, 80 m KITTI) and scored with AbsRel / delta1 / ... on
the sample's valid pixels (NYU: Eigen crop; KITTI: every LiDAR pixel). The metrics of a folder
are the means of its frames' metrics.

Trivial baselines, measured the same way: ``constant`` (the least-squares alignment of a constant
is the mean target disparity), ``depth_ramp`` (depth linear in the row, top far, bottom near;
aligned in depth) and ``disparity_ramp`` (disparity linear in the row, a ground-plane ramp;
aligned in disparity).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from depthweb.geometry.metrics import align_and_evaluate
from depthweb.training.evaldata import EvalSample
from depthweb.types import DepthKind

BASELINES = ("constant", "depth_ramp", "disparity_ramp")
Predictor = Callable[[EvalSample], tuple[np.ndarray, DepthKind]]


def baseline_prediction(name: str, height: int, width: int) -> tuple[np.ndarray, DepthKind]:
    """A trivial prediction (H, W) and what it means."""
    rows = (np.arange(height, dtype=np.float64) + 0.5) / height  # 0 at the top, 1 at the bottom
    ramp = np.repeat(rows[:, None], width, axis=1)
    if name == "constant":
        return np.ones((height, width)), DepthKind.RELATIVE_DISPARITY
    if name == "depth_ramp":
        return 1.0 - ramp, DepthKind.RELATIVE_DEPTH
    if name == "disparity_ramp":
        return ramp, DepthKind.RELATIVE_DISPARITY
    raise ValueError(f"unknown baseline {name!r}; use one of {', '.join(BASELINES)}")


def evaluate_prediction(pred: np.ndarray, kind: DepthKind | str, sample: EvalSample
                        ) -> dict[str, float]:
    """Metrics of one prediction (H, W) on one sample (see the module docstring)."""
    kind = DepthKind(kind)
    mask = sample.valid & np.isfinite(pred)
    values = pred[mask]
    if kind is not DepthKind.METRIC_DEPTH and values.size and np.ptp(values) == 0:
        # Least squares with a constant regressor fits only the shift: the mean target.
        gt = sample.depth[mask].astype(np.float64)
        mean = np.mean(1.0 / gt) if kind is DepthKind.RELATIVE_DISPARITY else np.mean(gt)
        depth = 1.0 / mean if kind is DepthKind.RELATIVE_DISPARITY else mean
        pred, kind = np.full(pred.shape, depth), DepthKind.METRIC_DEPTH
    return align_and_evaluate(pred, kind, sample.depth, sample.valid, sample.max_depth)


def evaluate_folder(samples: Sequence[EvalSample], predict: Predictor) -> dict:
    """Per-frame and mean metrics of ``predict`` over ``samples``."""
    frames = {s.name: evaluate_prediction(*predict(s), s) for s in samples}
    keys = [k for k in next(iter(frames.values())) if k not in ("n", "scale", "shift")]
    mean = {k: float(np.mean([f[k] for f in frames.values()])) for k in keys}
    return {"mean": mean, "frames": frames}


def evaluate_baselines(samples: Sequence[EvalSample]) -> dict[str, dict]:
    """:func:`evaluate_folder` of each trivial baseline."""
    return {name: evaluate_folder(samples, lambda s, n=name: baseline_prediction(
        n, *s.depth.shape)) for name in BASELINES}


def beats(candidate: dict, baselines: dict[str, dict]) -> bool:
    """Whether a folder result has lower AbsRel and higher delta1 than every baseline's."""
    c = candidate["mean"]
    return all(c["abs_rel"] < b["mean"]["abs_rel"] and c["delta1"] > b["mean"]["delta1"]
               for b in baselines.values())
