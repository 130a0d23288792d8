"""The backend interface: one line to use (``backend.infer_image(rgb)``), typed results out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from depthweb.models.loading import ResolvedWeights
from depthweb.models.specs import ModelSpec
from depthweb.types import DepthResult, Intrinsics


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


def check_rgb(image: np.ndarray) -> None:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 (H, W, 3) image, got {image.dtype} {image.shape}")
