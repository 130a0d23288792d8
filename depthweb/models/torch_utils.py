"""Shared torch helpers: device choice, tensor preprocessing without PIL, resizing back."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def pick_device(preference: str = "auto") -> str:
    """``auto`` -> cuda if available, then mps, else cpu; anything else is used as given."""
    if preference != "auto":
        return preference
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def pick_dtype(device: str) -> torch.dtype:
    """fp16 on GPUs, fp32 on CPU."""
    return torch.float16 if device.startswith(("cuda", "mps")) else torch.float32


def to_tensor(images: Sequence[np.ndarray], device: str) -> torch.Tensor:
    """Stack same-shape RGB uint8 (H, W, 3) images into a float (B, 3, H, W) tensor in [0, 1]."""
    batch = torch.from_numpy(np.stack(images, axis=0)).to(device, non_blocking=True)
    return batch.permute(0, 3, 1, 2).float().div_(255.0)


def normalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    m = torch.tensor(mean, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
    s = torch.tensor(std, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
    return (x - m) / s


def constrain_to_multiple(value: float, multiple: int, min_value: int = 0) -> int:
    y = int(round(value / multiple) * multiple)
    if y < min_value:
        y = int(math.ceil(value / multiple) * multiple)
    return max(y, multiple)


def lower_bound_size(height: int, width: int, target: int, multiple: int) -> tuple[int, int]:
    """Aspect-preserving size whose shorter side is at least ``target``, sides rounded to ``multiple``.

    This is the Depth Anything / DPT ``keep_aspect_ratio`` + ``ensure_multiple_of`` rule.
    """
    scale = max(target / height, target / width)
    return (
        constrain_to_multiple(height * scale, multiple, target),
        constrain_to_multiple(width * scale, multiple, target),
    )


def resize(x: torch.Tensor, size: tuple[int, int], mode: str = "bicubic") -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    align = False if mode in ("bilinear", "bicubic") else None
    out = F.interpolate(x, size=size, mode=mode, align_corners=align, antialias=mode != "nearest")
    return out


def upsample_prediction(pred: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """(B, h, w) or (B, 1, h, w) prediction -> float32 numpy (B, H, W) at the input resolution."""
    if pred.ndim == 3:
        pred = pred[:, None]
    pred = F.interpolate(pred.float(), size=size, mode="bilinear", align_corners=False)
    return pred[:, 0].cpu().numpy().astype(np.float32, copy=False)


def group_by_shape(images: Sequence[np.ndarray]) -> dict[tuple[int, ...], list[int]]:
    """Indices of images sharing a shape, so each group is one forward pass."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, im in enumerate(images):
        groups.setdefault(tuple(im.shape), []).append(i)
    return groups


@contextmanager
def stage(timings: dict[str, float], name: str, device: str | None = None) -> Iterator[None]:
    """Add the wall time of a block to ``timings[name]`` in milliseconds (syncs CUDA)."""
    if device and device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    yield
    if device and device.startswith("cuda"):
        torch.cuda.synchronize()
    timings[name] = timings.get(name, 0.0) + (time.perf_counter() - t0) * 1000.0
