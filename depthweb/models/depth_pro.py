"""Apple Depth Pro through transformers ``DepthProForDepthEstimation``: metric depth and focal.

Preprocessing (our own tensors; the hub's image processor needs torchvision), as
``DepthProImageProcessor``: uint8 -> [0, 1] -> normalise with mean = std = 0.5 -> bilinear resize
without antialiasing (``align_corners=False``) to the square canvas the model was built for,
``patch_size / min(scaled_images_ratios)`` (1536 for the released model).

Post-processing mirrors ``DepthProImageProcessor.post_process_depth_estimation`` (and the original
``DepthPro.infer``): the network predicts canonical inverse depth ``c`` on the canvas; with the
horizontal FOV ``fov`` (degrees, from the FOV head) and the *original* image width ``W``::

    f_px  = 0.5 * W / tan(0.5 * radians(fov))
    inv   = bilinear_resize(c * W / f_px, (H, W))        # align_corners=False
    depth = 1 / clamp(inv, 1e-4, 1e4)                    # metres, i.e. f_px / (W * c)

A known focal (intrinsics with source user, EXIF or calib, in pixels of the input image) replaces
the predicted one, like ``infer(f_px=...)``: depth is then linear in that focal.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from depthweb.config import get_settings
from depthweb.geometry.intrinsics import checked_prediction, resolve_intrinsics
from depthweb.models.base import DepthBackend, check_rgb
from depthweb.models.loading import ResolvedWeights
from depthweb.models.specs import ModelSpec
from depthweb.models.torch_utils import (
    load_pretrained_dir,
    normalize,
    pick_dtype,
    stage,
    to_tensor,
)
from depthweb.types import DepthKind, DepthResult, Intrinsics, IntrinsicsSource

log = logging.getLogger(__name__)

DEPTH_PRO_MEAN = (0.5, 0.5, 0.5)
DEPTH_PRO_STD = (0.5, 0.5, 0.5)
KNOWN_SOURCES = frozenset({IntrinsicsSource.USER, IntrinsicsSource.EXIF, IntrinsicsSource.CALIB})
"""Intrinsics taken as the true camera instead of the FOV head's prediction."""


def canvas_size(config) -> int:
    """Side of the square network input: ``patch_size / min(scaled_images_ratios)``."""
    return round(config.patch_size / min(config.scaled_images_ratios))


def preprocess_depth_pro(image: np.ndarray, device: str, canvas: int) -> torch.Tensor:
    """RGB uint8 (H, W, 3) -> float32 (1, 3, canvas, canvas) in [-1, 1] (normalise, then resize)."""
    x = normalize(to_tensor([image], device), DEPTH_PRO_MEAN, DEPTH_PRO_STD)
    return F.interpolate(x, size=(canvas, canvas), mode="bilinear", align_corners=False,
                         antialias=False)


def focal_from_fov(fov_deg: float, width: int) -> float:
    """``0.5 * W / tan(0.5 * radians(fov))``; NaN for a FOV outside (0, 180) degrees."""
    if not (math.isfinite(fov_deg) and 0.0 < fov_deg < 180.0):
        return math.nan
    return 0.5 * width / math.tan(0.5 * math.radians(fov_deg))


def metric_depth(
    canonical_inverse: torch.Tensor, focal_px: float, size: tuple[int, int]
) -> np.ndarray:
    """Canonical inverse depth (h, w) on the canvas -> metric depth float32 (H, W) = ``size``."""
    height, width = size
    inverse = canonical_inverse.float() * (width / focal_px)
    inverse = F.interpolate(inverse[None, None], size=(height, width), mode="bilinear",
                            align_corners=False)[0, 0]
    depth = 1.0 / torch.clamp(inverse, min=1e-4, max=1e4)
    return depth.cpu().numpy().astype(np.float32, copy=False)


class DepthProBackend(DepthBackend):
    """``DepthProForDepthEstimation`` behind the :class:`DepthBackend` interface."""

    max_batch = 4
    """Images per forward pass (every image goes to the same square canvas)."""

    def __init__(
        self, spec: ModelSpec, weights: ResolvedWeights, device: str, model: torch.nn.Module
    ) -> None:
        super().__init__(spec, weights.path, weights.label, device)
        self.model = model
        self.dtype = pick_dtype(device)
        self.canvas = canvas_size(model.config)
        self.has_fov_head = getattr(model, "fov_model", None) is not None

    @classmethod
    def load(cls, spec: ModelSpec, weights: ResolvedWeights, device: str) -> DepthProBackend:
        from transformers import DepthProForDepthEstimation

        model = load_pretrained_dir(
            DepthProForDepthEstimation, weights.path, weights.label, "depth_pro", spec.name
        )
        model.to(device=device, dtype=pick_dtype(device)).eval()
        backend = cls(spec, weights, device, model)
        if spec.options.get("fov_head") and not backend.has_fov_head:
            log.warning("%s: checkpoint at %s has no FOV head (use_fov_model=False); focal lengths "
                        "will be the given or assumed ones", spec.name, weights.label)
        return backend

    def infer_batch(
        self,
        images: Sequence[np.ndarray],
        intrinsics: Sequence[Intrinsics | None] | None = None,
    ) -> list[DepthResult]:
        """Metric depth (H, W) float32 per RGB uint8 (H, W, 3) image, with the focal it used.

        Timings are per image: a batch's preprocess and forward times are divided among its images.
        """
        images = list(images)
        for image in images:
            check_rgb(image)
        known = list(intrinsics) if intrinsics is not None else [None] * len(images)
        if len(known) != len(images):
            raise ValueError(f"got {len(known)} intrinsics for {len(images)} images")
        results: list[DepthResult] = []
        for start in range(0, len(images), self.max_batch):
            chunk = range(start, min(start + self.max_batch, len(images)))
            results.extend(self._infer_chunk([images[i] for i in chunk], [known[i] for i in chunk]))
        return results

    def _forward(self, batch: list[np.ndarray], timings: dict[str, float]):
        """-> canonical inverse depth (B, h, w) and FOV in degrees (B,) or None, as float32."""
        with stage(timings, "preprocess", self.device):
            x = torch.cat([preprocess_depth_pro(im, self.device, self.canvas) for im in batch])
            x = x.to(self.dtype)
        with stage(timings, "forward", self.device):
            out = self.model(pixel_values=x)
        fov = out.field_of_view if self.has_fov_head else None
        return out.predicted_depth.float(), None if fov is None else fov.float().cpu()

    def _infer_chunk(
        self, batch: list[np.ndarray], known: list[Intrinsics | None]
    ) -> list[DepthResult]:
        shared: dict[str, float] = {}
        with torch.inference_mode():
            canonical, fov = self._forward(batch, shared)
            shared = {k: v / len(batch) for k, v in shared.items()}
            results = []
            for i, image in enumerate(batch):
                timings = dict(shared)
                height, width = image.shape[:2]
                with stage(timings, "postprocess", self.device):
                    fov_i = None if fov is None else float(fov.reshape(-1)[i])
                    cam, notes = self._camera(fov_i, known[i], width, height)
                    depth = metric_depth(canonical[i], cam.fx, (height, width))
                results.append(DepthResult(
                    depth=depth, kind=DepthKind.METRIC_DEPTH, intrinsics=cam, model=self.spec.name,
                    weights=self.weights_label, timings_ms=timings, notes=notes,
                ))
        return results

    def _camera(
        self, fov_deg: float | None, known: Intrinsics | None, width: int, height: int
    ) -> tuple[Intrinsics, list[str]]:
        """The intrinsics whose ``fx`` scales the depth, and notes on how they were chosen."""
        if known is not None and known.source in KNOWN_SOURCES:
            return known, []
        default_fov = get_settings().default_fov_deg
        if known is not None and known.source == IntrinsicsSource.ASSUMED_FOV:
            default_fov = known.fov_x_deg(width)
        if fov_deg is None:
            cam = known or resolve_intrinsics(width, height, default_fov_deg=default_fov)
            note = (f"checkpoint has no FOV head: metric scale uses the {cam.source} focal "
                    f"fx={cam.fx:.1f} px")
            return cam, [note]
        predicted = Intrinsics.from_focal(
            width, height, focal_from_fov(fov_deg, width), IntrinsicsSource.PREDICTED,
            note=f"Depth Pro FOV head: {fov_deg:.2f} deg horizontal",
        )
        cam, note = checked_prediction(predicted, width, height, default_fov_deg=default_fov)
        if note is None:
            return cam, []
        note = f"the FOV head predicted {fov_deg:.2f} deg horizontal: {note}"
        log.warning("%s: %s", self.spec.name, note)
        return cam, [note]
