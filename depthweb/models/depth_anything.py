"""Depth Anything v1 / V2 (relative inverse depth) and the V2 metric heads, through transformers.

Preprocessing is done here on tensors (no image processor, no PIL round trip): uint8 RGB ->
[0, 1] -> aspect-preserving bicubic resize (antialiased, the kernel PIL uses in the hub's
``DPTImageProcessor``) so the shorter side is ``spec.input_size`` and both sides are multiples of
``spec.multiple`` -> ImageNet normalisation -> fp16 on GPUs. The prediction is resized back to the
input resolution with bilinear interpolation (which, unlike bicubic, never overshoots a metric
head's ``[0, max_depth]`` range).

Relative checkpoints predict affine-invariant inverse depth (``relative_disparity``); the metric
heads (``depth_estimation_type="metric"``) predict metres, ``sigmoid(x) * max_depth`` inside the
transformers model.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
import torch

from depthweb.errors import ModelUnavailableError
from depthweb.models.base import BatchedBackend
from depthweb.models.loading import ResolvedWeights
from depthweb.models.specs import ModelSpec
from depthweb.models.torch_utils import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    load_pretrained_dir,
    lower_bound_size,
    pick_dtype,
    resized_normalized,
    stage,
    upsample_prediction,
)
from depthweb.types import DepthKind

log = logging.getLogger(__name__)

_KIND_BY_TYPE = {"relative": DepthKind.RELATIVE_DISPARITY, "metric": DepthKind.METRIC_DEPTH}


def preprocess_depth_anything(
    images: Sequence[np.ndarray], device: str, input_size: int, multiple: int
) -> torch.Tensor:
    """Same-shape RGB uint8 (H, W, 3) images -> normalised float32 (B, 3, h, w) model input.

    ``(h, w)`` is :func:`lower_bound_size` of ``(H, W)``: shorter side ``input_size``, both sides
    multiples of ``multiple``. Values are clamped to [0, 1] after the bicubic resize, as the
    image processor's uint8 resize does, then ImageNet-normalised.
    """
    h, w = images[0].shape[:2]
    size = lower_bound_size(h, w, input_size, multiple)
    return resized_normalized(images, size, device, IMAGENET_MEAN, IMAGENET_STD)


def _checked_kind(spec: ModelSpec, config, label: str) -> DepthKind:
    """The spec's kind, after checking that the checkpoint's head predicts the same thing."""
    head = getattr(config, "depth_estimation_type", "relative") or "relative"
    actual = _KIND_BY_TYPE.get(head)
    if actual is None or actual != spec.kind:
        raise ModelUnavailableError(
            f"Weights at {label} are a Depth Anything '{head}' model, but model '{spec.name}' "
            f"predicts {spec.kind}; pass the weights of the matching model."
        )
    expected_max = spec.options.get("max_depth")
    if actual.is_metric and expected_max is not None:
        got = float(getattr(config, "max_depth", 0) or 0)
        if not math.isclose(got, float(expected_max)):
            log.warning(
                "%s: checkpoint max_depth=%g differs from the spec's %g; the checkpoint's value "
                "is what the model applies", spec.name, got, float(expected_max),
            )
    return actual


class DepthAnythingBackend(BatchedBackend):
    """``DepthAnythingForDepthEstimation`` behind the :class:`DepthBackend` interface."""

    max_batch = 8
    """Same-shape images per forward pass."""

    def __init__(
        self,
        spec: ModelSpec,
        weights: ResolvedWeights,
        device: str,
        model: torch.nn.Module,
        kind: DepthKind,
    ) -> None:
        super().__init__(spec, weights.path, weights.label, device)
        self.model = model
        self.kind = kind
        self.dtype = pick_dtype(device)
        self.input_size = int(spec.input_size if isinstance(spec.input_size, int) else 518)
        patch = int(getattr(model.config, "patch_size", spec.multiple))
        self.multiple = spec.multiple if spec.multiple % patch == 0 else patch

    @classmethod
    def load(cls, spec: ModelSpec, weights: ResolvedWeights, device: str) -> DepthAnythingBackend:
        from transformers import DepthAnythingForDepthEstimation

        model = load_pretrained_dir(DepthAnythingForDepthEstimation, weights.path,
                                    weights.label, "depth_anything", spec.name)
        kind = _checked_kind(spec, model.config, weights.label)
        model.to(device=device, dtype=pick_dtype(device)).eval()
        return cls(spec, weights, device, model, kind)

    def _predict(self, batch: list[np.ndarray]) -> tuple[np.ndarray, dict[str, float]]:
        """One forward pass over same-shape images -> (B, H, W) float32 and per-image timings."""
        timings: dict[str, float] = {}
        height, width = batch[0].shape[:2]
        with torch.inference_mode():
            with stage(timings, "preprocess", self.device):
                x = preprocess_depth_anything(batch, self.device, self.input_size, self.multiple)
                x = x.to(self.dtype)
            with stage(timings, "forward", self.device):
                pred = self.model(pixel_values=x).predicted_depth
            with stage(timings, "postprocess", self.device):
                depth = upsample_prediction(pred, (height, width))
        return depth, {k: v / len(batch) for k, v in timings.items()}
