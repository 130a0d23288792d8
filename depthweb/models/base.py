"""The backend interface: one line to use (``backend.infer_image(rgb)``), typed results out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from depthweb.models.loading import ResolvedWeights
from depthweb.models.specs import ModelSpec
from depthweb.types import DepthKind, DepthResult, Intrinsics


class DepthBackend(ABC):
    """A loaded model.

    ``images`` are RGB uint8 arrays (H, W, 3). ``intrinsics`` per image are the *known* camera
    (user, EXIF or assumed FOV) at that image's resolution; models that predict a camera use it
    as a fixed focal when its source is ``user`` or ``exif`` and predict their own otherwise.
    Results come back at each input's resolution.
    """

    def __init__(
        self, spec: ModelSpec, weights_path: Path, weights_label: str, device: str
    ) -> None:
        self.spec = spec
        self.weights_path = weights_path
        self.weights_label = weights_label
        self.device = device

    @classmethod
    @abstractmethod
    def load(cls, spec: ModelSpec, weights: ResolvedWeights, device: str) -> DepthBackend:
        """Build the backend from weights on disk (a directory or a single file)."""

    @property
    def name(self) -> str:
        return self.spec.name

    @abstractmethod
    def infer_batch(
        self,
        images: Sequence[np.ndarray],
        intrinsics: Sequence[Intrinsics | None] | None = None,
    ) -> list[DepthResult]:
        """Predict depth for several images (batched where shapes allow)."""

    def infer_image(self, image: np.ndarray, intrinsics: Intrinsics | None = None) -> DepthResult:
        """Predict depth for one RGB uint8 (H, W, 3) image."""
        return self.infer_batch([image], [intrinsics])[0]


def checked_batch(
    images: Sequence[np.ndarray], intrinsics: Sequence[Intrinsics | None] | None
) -> tuple[list[np.ndarray], list[Intrinsics | None]]:
    """Validate a batch: RGB uint8 images and one (possibly None) intrinsics entry per image."""
    images = list(images)
    for image in images:
        check_rgb(image)
    known = list(intrinsics) if intrinsics is not None else [None] * len(images)
    if len(known) != len(images):
        raise ValueError(f"got {len(known)} intrinsics for {len(images)} images")
    return images, known


def check_rgb(image: np.ndarray) -> None:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 (H, W, 3) image, got {image.dtype} {image.shape}")


class BatchedBackend(DepthBackend):
    """A backend whose model maps a same-shape batch to depth: subclasses implement ``_predict``.

    ``infer_batch`` groups images by shape (at most ``max_batch`` per forward pass), fills in the
    assumed camera where none is known, and wraps each map in a :class:`DepthResult` of
    ``self.kind`` with ``result_notes()``.
    """

    max_batch = 8
    kind: DepthKind

    @abstractmethod
    def _predict(self, batch: list[np.ndarray]) -> tuple[np.ndarray, dict[str, float]]:
        """Same-shape RGB images -> ((B, H, W) float32 at input size, per-image timings in ms)."""

    def result_notes(self) -> list[str]:
        return []

    def infer_batch(
        self,
        images: Sequence[np.ndarray],
        intrinsics: Sequence[Intrinsics | None] | None = None,
    ) -> list[DepthResult]:
        """Depth for each RGB uint8 (H, W, 3) image, as (H, W) float32 at the input resolution.

        Timings are per image: a batch's stage times are divided among its images.
        """
        from depthweb.config import get_settings
        from depthweb.geometry.intrinsics import resolve_intrinsics
        from depthweb.models.torch_utils import shape_batches

        images, known = checked_batch(images, intrinsics)
        default_fov = get_settings().default_fov_deg
        results: list[DepthResult | None] = [None] * len(images)
        for indices in shape_batches(images, self.max_batch):
            depths, timings = self._predict([images[i] for i in indices])
            for depth, i in zip(depths, indices, strict=True):
                h, w = images[i].shape[:2]
                cam = known[i] or resolve_intrinsics(w, h, default_fov_deg=default_fov)
                results[i] = DepthResult(
                    depth=depth, kind=self.kind, intrinsics=cam, model=self.spec.name,
                    weights=self.weights_label, timings_ms=dict(timings),
                    notes=self.result_notes(),
                )
        return [r for r in results if r is not None]
