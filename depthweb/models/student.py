"""Students trained by this project (``depthweb.training``), served like any other backend.

A student is a directory with ``model.safetensors`` and ``config.json``: the compact CPU student
(``"model_type": "depthweb_student"``, its ``kind`` and ``input_size`` in the config) or a Depth
Anything student saved by transformers (relative disparity). Preprocessing is the shared tensor
path: uint8 RGB -> [0, 1] -> antialiased bicubic resize so the shorter side is the student's
``input_size`` and both sides are multiples of its ``multiple`` -> ImageNet normalisation. The
prediction is resized back to the input resolution (bilinear).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from depthweb.errors import ModelUnavailableError
from depthweb.models.base import BatchedBackend
from depthweb.models.loading import ResolvedWeights
from depthweb.models.specs import ModelSpec
from depthweb.models.torch_utils import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    lower_bound_size,
    normalize,
    resize,
    stage,
    to_tensor,
    upsample_prediction,
)
from depthweb.types import DepthKind

STUDENT_TYPES = ("depthweb_student", "depth_anything")


def read_config(path: Path, label: str, name: str) -> dict:
    """The student's ``config.json`` (``path`` a directory or a file inside it)."""
    path = path.parent if path.is_file() else path
    cfg_path = path / "config.json"
    if not cfg_path.is_file() or not (path / "model.safetensors").is_file():
        raise ModelUnavailableError(
            f"Weights for model '{name}' at {label} need config.json and model.safetensors; "
            f"pass the directory a training run wrote (its student/ folder).")
    try:
        cfg = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelUnavailableError(f"Weights for model '{name}' at {label} have an unreadable "
                                    f"config.json ({exc}).") from exc
    if cfg.get("model_type") not in STUDENT_TYPES:
        raise ModelUnavailableError(
            f"Weights at {label} are a '{cfg.get('model_type')}' model, not a depthweb student; "
            f"pass the weights of a student.")
    return cfg


class StudentBackend(BatchedBackend):
    """A trained student behind the :class:`DepthBackend` interface."""

    max_batch = 8

    def __init__(self, spec: ModelSpec, weights: ResolvedWeights, device: str,
                 model: torch.nn.Module, config: dict) -> None:
        super().__init__(spec, weights.path, weights.label, device)
        self.model = model
        self.kind = DepthKind(config.get("kind", DepthKind.RELATIVE_DISPARITY))
        size = spec.input_size if isinstance(spec.input_size, int) else 192
        self.input_size = int(config.get("input_size", size))
        self.multiple = int(config.get("multiple", 14 if "backbone_config" in config else 32))

    @classmethod
    def load(cls, spec: ModelSpec, weights: ResolvedWeights, device: str) -> StudentBackend:
        from depthweb.training.student import load_student

        cfg = read_config(Path(weights.path), weights.label, spec.name)
        path = weights.path.parent if weights.path.is_file() else weights.path
        try:
            model = load_student(path)
        except (OSError, ValueError, RuntimeError) as exc:
            raise ModelUnavailableError(f"Weights for model '{spec.name}' at {weights.label} "
                                        f"could not be loaded ({exc}).") from exc
        model.to(device).eval()
        return cls(spec, weights, device, model, cfg)

    def result_notes(self) -> list[str]:
        return [f"{self.spec.name}: {self.spec.description}"]

    def _predict(self, batch: list[np.ndarray]) -> tuple[np.ndarray, dict[str, float]]:
        """One forward pass over same-shape images -> (B, H, W) float32 and per-image timings."""
        timings: dict[str, float] = {}
        height, width = batch[0].shape[:2]
        with torch.inference_mode():
            with stage(timings, "preprocess", self.device):
                x = to_tensor(batch, self.device)
                size = lower_bound_size(height, width, self.input_size, self.multiple)
                x = normalize(resize(x, size, "bicubic").clamp_(0.0, 1.0), IMAGENET_MEAN,
                              IMAGENET_STD)
            with stage(timings, "forward", self.device):
                pred = self.model(x)
            with stage(timings, "postprocess", self.device):
                depth = upsample_prediction(pred, (height, width))
        return depth, {k: v / len(batch) for k, v in timings.items()}
