"""Losses of the Depth Anything recipe, each per image on (B, H, W) tensors with masks.

Every loss returns one value per image, shape (B,); :func:`weighted_mean` turns those into the
batch loss with per-sample weights. Masks are bool (B, H, W), True where a pixel supervises.
An image without valid pixels gets a loss of 0 (and :func:`weighted_mean` gives it no weight
when it is told the pixel counts).

- :func:`ssi_loss`: scale-and-shift-invariant MAE in disparity space (MiDaS). The target is
  normalised per image by its median and mean absolute deviation; the prediction either the same
  way (``align="median"``) or by least squares onto the normalised target (``align="lstsq"``).
  ``trim`` drops the largest fraction of per-pixel losses (0.1 for pseudo-labels, as in Depth
  Anything).
- :func:`gradient_matching_loss`: multi-scale gradient matching of the aligned residual (MiDaS).
- :func:`silog_loss`: scale-invariant log loss for metric students.
- :func:`feature_alignment_loss`: 1 - cosine similarity to a frozen encoder's features, skipping
  pixels already more similar than the margin (Depth Anything's tolerance margin).
- :func:`cutmix_loss`: a CutMix sample's loss, per region against each source's label.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

PerImageLoss = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def _count(mask: torch.Tensor) -> torch.Tensor:
    return mask.flatten(1).sum(1)


def masked_median(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-image median (B,) of ``x`` (B, H, W) over ``mask`` (lower median; 0 if empty)."""
    flat = torch.where(mask, x, torch.full_like(x, math.inf)).flatten(1)
    n = _count(mask)
    ordered = flat.sort(1).values
    idx = ((n - 1).clamp(min=0) // 2).long()
    med = ordered.gather(1, idx[:, None])[:, 0]
    return torch.where(n > 0, med, torch.zeros_like(med))


def normalize_ssi(x: torch.Tensor, mask: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """MiDaS normalisation (B, H, W): ``(x - median) / mean|x - median|`` per image on ``mask``."""
    med = masked_median(x, mask)[:, None, None]
    dev = ((x - med).abs() * mask).flatten(1).sum(1) / _count(mask).clamp(min=1)
    return (x - med) / (dev[:, None, None] + eps)


def fit_scale_shift_torch(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, eps: float = 1e-9
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image least squares ``min sum mask * (s * pred + t - target)^2`` -> (s, t), each (B,).

    A degenerate image (constant prediction or < 2 pixels) gets ``s = 0`` and ``t`` the mean.
    """
    m = mask.to(pred.dtype)
    a00 = (m * pred * pred).flatten(1).sum(1)
    a01 = (m * pred).flatten(1).sum(1)
    a11 = m.flatten(1).sum(1)
    b0 = (m * pred * target).flatten(1).sum(1)
    b1 = (m * target).flatten(1).sum(1)
    det = a00 * a11 - a01 * a01
    ok = det.abs() > eps * (a00 * a11).clamp(min=eps)
    safe = torch.where(ok, det, torch.ones_like(det))
    s = torch.where(ok, (a11 * b0 - a01 * b1) / safe, torch.zeros_like(det))
    t = torch.where(ok, (a00 * b1 - a01 * b0) / safe, b1 / a11.clamp(min=1))
    return s, t


def align_ssi(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, align: str = "median"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Prediction and target in the shared normalised space, both (B, H, W)."""
    target_n = normalize_ssi(target, mask)
    if align == "median":
        return normalize_ssi(pred, mask), target_n
    if align == "lstsq":
        s, t = fit_scale_shift_torch(pred, target_n, mask)
        return s[:, None, None] * pred + t[:, None, None], target_n
    raise ValueError(f"unknown alignment {align!r}; use 'median' or 'lstsq'")


def trimmed_mean(
    values: torch.Tensor, mask: torch.Tensor, trim: float | torch.Tensor = 0.0
) -> torch.Tensor:
    """Per-image mean (B,) of ``values`` (B, H, W) over ``mask`` after dropping the largest
    ``floor(trim * n)`` of each image's ``n`` valid values; ``trim`` a float or (B,) tensor."""
    n = _count(mask)
    trim_t = torch.as_tensor(trim, dtype=torch.float64, device=values.device).expand(len(n))
    drop = torch.floor(trim_t * n.double() + 1e-6).long()
    keep = (n - drop).clamp(min=0)
    flat = torch.where(mask, values, torch.full_like(values, math.inf)).flatten(1)
    ordered = flat.sort(1).values
    kept = torch.arange(ordered.shape[1], device=values.device)[None] < keep[:, None]
    total = torch.where(kept, ordered, torch.zeros_like(ordered)).sum(1)
    return total / keep.clamp(min=1).to(values.dtype)


def ssi_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor,
    *,
    trim: float | torch.Tensor = 0.0,
    align: str = "median",
) -> torch.Tensor:
    """Scale-and-shift-invariant MAE per image (B,); inputs disparity (B, H, W).

    ``trim=0.1`` ignores the 10 % largest per-pixel losses of each image (pseudo-labels).
    """
    pred_n, target_n = align_ssi(pred, target, mask, align)
    return trimmed_mean((pred_n - target_n).abs(), mask, trim)


def gradient_matching_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor,
    *,
    scales: int = 4,
    align: str = "median",
) -> torch.Tensor:
    """MiDaS multi-scale gradient matching per image (B,).

    With ``R`` the aligned residual, sums ``|dR/dx| + |dR/dy|`` over neighbouring valid pixel
    pairs at ``scales`` levels (every 2**k-th pixel), divided by the image's valid pixel count.
    """
    pred_n, target_n = align_ssi(pred, target, mask, align)
    res = (pred_n - target_n) * mask
    total = torch.zeros(pred.shape[0], dtype=pred.dtype, device=pred.device)
    for k in range(scales):
        step = 2**k
        r, m = res[:, ::step, ::step], mask[:, ::step, ::step]
        mx = m[:, :, 1:] & m[:, :, :-1]
        my = m[:, 1:, :] & m[:, :-1, :]
        gx = (r[:, :, 1:] - r[:, :, :-1]).abs() * mx
        gy = (r[:, 1:, :] - r[:, :-1, :]).abs() * my
        total = total + gx.flatten(1).sum(1) + gy.flatten(1).sum(1)
    return total / _count(mask).clamp(min=1).to(pred.dtype)


def silog_loss(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, *, lam: float = 0.5,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Scale-invariant log loss per image (B,) on metric depths (B, H, W) (> 0 where valid):
    ``sqrt(mean(g^2) - lam * mean(g)^2)`` with ``g = log pred - log target`` over ``mask``."""
    m = mask & (target > 0)
    g = (torch.log(pred.clamp(min=eps)) - torch.log(target.clamp(min=eps))) * m
    n = _count(m).clamp(min=1).to(pred.dtype)
    mean = g.flatten(1).sum(1) / n
    mean_sq = (g * g).flatten(1).sum(1) / n
    return torch.sqrt((mean_sq - lam * mean * mean).clamp(min=1e-12))


def feature_alignment_loss(
    student: torch.Tensor, teacher: torch.Tensor, *, margin: float = 0.85
) -> tuple[torch.Tensor, torch.Tensor]:
    """``mean(1 - cos)`` over pixels whose cosine similarity is still below ``margin``.

    ``student`` (B, C, h, w) (already projected to the teacher's C), ``teacher`` (B, C, H, W)
    (resized to (h, w) here; no gradient flows into it). Returns the scalar loss (0 when every
    pixel is within the margin) and the bool (B, h, w) mask of pixels that counted.
    """
    teacher = teacher.detach()
    if teacher.shape[-2:] != student.shape[-2:]:
        teacher = F.interpolate(teacher, size=student.shape[-2:], mode="bilinear",
                                align_corners=False)
    cos = F.cosine_similarity(student, teacher, dim=1)
    counted = cos.detach() < margin
    if not counted.any():
        return (cos * 0.0).sum(), counted
    return (1.0 - cos)[counted].mean(), counted


def weighted_mean(
    per_image: torch.Tensor, weights: torch.Tensor | None = None,
    valid_pixels: torch.Tensor | None = None,
) -> torch.Tensor:
    """Batch loss from per-image losses (B,): weighted by ``weights`` (B,), ignoring images
    with ``valid_pixels == 0``. 0 (with a gradient path) when nothing has weight."""
    w = torch.ones_like(per_image) if weights is None else weights.to(per_image.dtype)
    if valid_pixels is not None:
        w = w * (valid_pixels > 0).to(per_image.dtype)
    return (per_image * w).sum() / w.sum().clamp(min=1e-12)


@dataclass
class CutMixBookkeeping:
    """Which pixels each source supervised and its loss, per image (each (B,))."""

    pixels_a: torch.Tensor
    pixels_b: torch.Tensor
    loss_a: torch.Tensor
    loss_b: torch.Tensor


def cutmix_loss(
    pred: torch.Tensor,
    target_a: torch.Tensor,
    mask_a: torch.Tensor,
    target_b: torch.Tensor,
    mask_b: torch.Tensor,
    in_box: torch.Tensor,
    loss_fn: PerImageLoss = ssi_loss,
) -> tuple[torch.Tensor, CutMixBookkeeping]:
    """Loss (B,) of a CutMix prediction (B, H, W) whose pixels inside ``in_box`` (B, H, W) come
    from source b and the rest from source a: ``loss_fn`` on each region against that source's
    label (each aligned on its own), averaged by the regions' valid pixel counts."""
    region_a = mask_a & ~in_box
    region_b = mask_b & in_box
    n_a, n_b = _count(region_a).to(pred.dtype), _count(region_b).to(pred.dtype)
    loss_a = loss_fn(pred, target_a, region_a)
    loss_b = loss_fn(pred, target_b, region_b)
    total = (n_a * loss_a + n_b * loss_b) / (n_a + n_b).clamp(min=1)
    return total, CutMixBookkeeping(n_a, n_b, loss_a.detach(), loss_b.detach())
