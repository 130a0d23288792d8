"""Strong perturbations for pseudo-labelled images (Depth Anything): colour jitter, Gaussian blur,
CutMix. Plain torch ops on float images (B, 3, H, W) in [0, 1]; every random draw comes from the
``torch.Generator`` passed in, so a seeded run perturbs the same way each time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

_LUMA = (0.299, 0.587, 0.114)


def _uniform(n: int, lo: float, hi: float, gen: torch.Generator | None,
             device: torch.device) -> torch.Tensor:
    return (torch.rand(n, generator=gen) * (hi - lo) + lo).to(device)


def grayscale(x: torch.Tensor) -> torch.Tensor:
    """Luma (B, 1, H, W) of RGB images (B, 3, H, W)."""
    w = torch.tensor(_LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True)


def color_jitter(
    x: torch.Tensor,
    *,
    brightness: float = 0.4,
    contrast: float = 0.4,
    saturation: float = 0.4,
    hue_shift: float = 0.05,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Random brightness, contrast, saturation factors in ``[1 - a, 1 + a]`` per image and a
    small hue change (a rotation of the chroma plane by up to ``hue_shift`` turns); (B, 3, H, W)."""
    b = x.shape[0]
    dev = x.device

    def factor(a: float) -> torch.Tensor:
        return _uniform(b, 1 - a, 1 + a, generator, dev).view(b, 1, 1, 1).to(x.dtype)

    x = x * factor(brightness)
    mean = grayscale(x).mean((2, 3), keepdim=True)
    x = (x - mean) * factor(contrast) + mean
    gray = grayscale(x)
    x = (x - gray) * factor(saturation) + gray
    if hue_shift > 0:
        x = _rotate_hue(x, _uniform(b, -hue_shift, hue_shift, generator, dev) * 2 * math.pi)
    return x.clamp(0.0, 1.0)


def _rotate_hue(x: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Rotate colours about the grey axis by ``angle`` (B,) radians (YIQ chroma rotation)."""
    to_yiq = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322],
                           [0.211, -0.523, 0.312]], dtype=x.dtype, device=x.device)
    from_yiq = torch.linalg.inv(to_yiq)
    c, s = torch.cos(angle).to(x.dtype), torch.sin(angle).to(x.dtype)
    rot = torch.zeros(len(angle), 3, 3, dtype=x.dtype, device=x.device)
    rot[:, 0, 0] = 1
    rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = c, -s, s, c
    mat = from_yiq @ rot @ to_yiq  # (B, 3, 3)
    return torch.einsum("bij,bjhw->bihw", mat, x)


def gaussian_kernel1d(sigma: float, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Normalised 1-D Gaussian taps, radius ``ceil(3 sigma)``."""
    radius = max(math.ceil(3 * sigma), 1)
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return (k / k.sum()).to(dtype)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (B, C, H, W) with edge padding; ``sigma`` in pixels."""
    if sigma <= 0:
        return x
    k = gaussian_kernel1d(sigma, x.dtype).to(x.device)
    c, r = x.shape[1], len(k) // 2
    x = F.pad(x, (r, r, 0, 0), mode="replicate")
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    x = F.pad(x, (0, 0, r, r), mode="replicate")
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


@dataclass(frozen=True)
class Box:
    """Rows ``y0:y1`` and columns ``x0:x1`` of an image."""

    y0: int
    y1: int
    x0: int
    x1: int

    @property
    def area(self) -> int:
        return max(self.y1 - self.y0, 0) * max(self.x1 - self.x0, 0)


def random_box(height: int, width: int, *, area: tuple[float, float] = (0.1, 0.5),
               generator: torch.Generator | None = None) -> Box:
    """A box covering a random ``area`` fraction of the image, aspect 1/2..2, fully inside."""
    frac = float(torch.empty(1).uniform_(*area, generator=generator))
    aspect = math.exp(float(torch.empty(1).uniform_(math.log(0.5), math.log(2.0),
                                                    generator=generator)))
    bh = min(height, max(1, round(math.sqrt(frac * height * width / aspect))))
    bw = min(width, max(1, round(math.sqrt(frac * height * width * aspect))))
    y0 = int(torch.randint(0, height - bh + 1, (1,), generator=generator))
    x0 = int(torch.randint(0, width - bw + 1, (1,), generator=generator))
    return Box(y0, y0 + bh, x0, x0 + bw)


def box_mask(height: int, width: int, box: Box, device: torch.device | str = "cpu") -> torch.Tensor:
    """Bool (H, W), True inside ``box``."""
    m = torch.zeros(height, width, dtype=torch.bool, device=device)
    m[box.y0:box.y1, box.x0:box.x1] = True
    return m


def cutmix(image_a: torch.Tensor, image_b: torch.Tensor, box: Box) -> tuple[torch.Tensor,
                                                                           torch.Tensor]:
    """Paste ``image_b``'s ``box`` into ``image_a`` (both (..., C, H, W)).

    Returns the mixed image and the bool (H, W) mask of pixels that came from ``image_b``.
    """
    inside = box_mask(image_a.shape[-2], image_a.shape[-1], box, image_a.device)
    return torch.where(inside, image_b, image_a), inside


def strong_perturb(
    x: torch.Tensor, *, generator: torch.Generator | None = None, jitter: float = 0.4,
    blur_prob: float = 0.5, blur_sigma: tuple[float, float] = (0.1, 2.0),
) -> torch.Tensor:
    """Colour jitter for every image, Gaussian blur for each with probability ``blur_prob``."""
    x = color_jitter(x, brightness=jitter, contrast=jitter, saturation=jitter,
                     generator=generator)
    out = []
    for img in x:
        if float(torch.rand(1, generator=generator)) < blur_prob:
            sigma = float(torch.empty(1).uniform_(*blur_sigma, generator=generator))
            img = gaussian_blur(img[None], sigma)[0]
        out.append(img)
    return torch.stack(out)
