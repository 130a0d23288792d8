"""One training step's data handling and loss: flips, strong perturbations and CutMix on
pseudo-labelled samples, then the per-image losses of the config combined with sample weights.

Batches are the dicts of :mod:`depthweb.training.datasets`, stacked: ``image`` (B, 3, H, W) in
[0, 1], ``target`` (B, H, W), ``valid`` (B, H, W), ``weight`` (B,), ``pseudo`` (B,).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from depthweb.training.config import LossConfig, PerturbConfig
from depthweb.training.losses import (
    cutmix_loss,
    feature_alignment_loss,
    gradient_matching_loss,
    silog_loss,
    ssi_loss,
    weighted_mean,
)
from depthweb.training.perturb import cutmix, random_box, strong_perturb


@dataclass
class PreparedBatch:
    """A batch after augmentation. ``mixes``: (i, j, in_box (H, W)) for each image ``i`` that
    got a box of image ``j`` pasted in (both pseudo-labelled; labels stay per source)."""

    image: torch.Tensor
    target: torch.Tensor
    valid: torch.Tensor
    weight: torch.Tensor
    pseudo: torch.Tensor
    mixes: list[tuple[int, int, torch.Tensor]] = field(default_factory=list)


def _coin(p: float, gen: torch.Generator) -> bool:
    return p > 0 and float(torch.rand(1, generator=gen)) < p


def prepare_batch(batch: dict[str, torch.Tensor], perturb: PerturbConfig, *, hflip: bool,
                  generator: torch.Generator, device: str | torch.device) -> PreparedBatch:
    """Move to ``device``, flip each sample with probability 1/2, perturb pseudo samples (colour
    jitter, blur, CutMix among them) and ``augment`` samples (colour jitter and blur)."""
    image = batch["image"].to(device)
    target, valid = batch["target"].to(device), batch["valid"].to(device)
    weight, pseudo = batch["weight"].to(device).float(), batch["pseudo"].to(device).bool()
    if hflip:
        flip = (torch.rand(len(image), generator=generator) < 0.5).to(device)
        image = torch.where(flip[:, None, None, None], image.flip(-1), image)
        target = torch.where(flip[:, None, None], target.flip(-1), target)
        valid = torch.where(flip[:, None, None], valid.flip(-1), valid)
    out = PreparedBatch(image, target, valid, weight, pseudo)
    augment = batch.get("augment", torch.zeros_like(batch["pseudo"])).bool().cpu()
    idx = torch.nonzero(pseudo.cpu()).flatten().tolist()
    jittered = torch.nonzero(pseudo.cpu() | augment).flatten().tolist()
    if not perturb.enabled or not jittered:
        return out
    strong = strong_perturb(image[jittered], generator=generator, jitter=perturb.jitter,
                            blur_prob=perturb.blur_prob)
    image = image.clone()
    image[jittered] = strong
    mixed = image.clone()
    if len(idx) >= 2:
        h, w = image.shape[-2:]
        for pos, i in enumerate(idx):
            if not _coin(perturb.cutmix_prob, generator):
                continue
            j = idx[(pos + 1 + int(torch.randint(0, len(idx) - 1, (1,), generator=generator)))
                    % len(idx)]
            mixed[i], in_box = cutmix(image[i], image[j], random_box(h, w, generator=generator))
            out.mixes.append((i, j, in_box))
    out.image = mixed
    return out


def per_image_loss(cfg: LossConfig, trim: float = 0.0):
    """The config's per-image loss ``f(pred, target, mask) -> (B,)``."""
    if cfg.target == "metric":
        return partial(silog_loss, lam=cfg.silog_lambda)

    def ssi_gm(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        loss = ssi_loss(pred, target, mask, trim=trim, align=cfg.align)
        if cfg.gradient_weight > 0:
            loss = loss + cfg.gradient_weight * gradient_matching_loss(
                pred, target, mask, scales=cfg.gradient_scales, align=cfg.align)
        return loss

    return ssi_gm


def batch_loss(pred: torch.Tensor, batch: PreparedBatch, cfg: LossConfig) -> torch.Tensor:
    """Weighted mean over the batch of each image's loss; pseudo images use the trimmed loss and
    CutMix images the per-region loss against both sources' labels."""
    clean, trimmed = per_image_loss(cfg, 0.0), per_image_loss(cfg, cfg.pseudo_trim)
    losses = torch.zeros(len(pred), dtype=pred.dtype, device=pred.device)
    plain = ~batch.pseudo
    if plain.any():
        losses[plain] = clean(pred[plain], batch.target[plain], batch.valid[plain])
    if batch.pseudo.any():
        p = batch.pseudo
        losses[p] = trimmed(pred[p], batch.target[p], batch.valid[p])
    counts = batch.valid.flatten(1).sum(1)
    for i, j, in_box in batch.mixes:
        loss, book = cutmix_loss(pred[i:i + 1], batch.target[i:i + 1], batch.valid[i:i + 1],
                                 batch.target[j:j + 1], batch.valid[j:j + 1], in_box[None],
                                 trimmed)
        losses[i] = loss[0]
        counts[i] = book.pixels_a[0] + book.pixels_b[0]
    return weighted_mean(losses, batch.weight, counts)


class FrozenEncoder(nn.Module):
    """A frozen transformers ViT encoder (e.g. DINOv2) from a local directory; returns patch
    features (B, C, H / patch, W / patch) for images resized to multiples of its patch size."""

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        from transformers import AutoModel

        self.model = AutoModel.from_pretrained(str(path)).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.patch = int(self.model.config.patch_size)
        self.skip = 1 + int(getattr(self.model.config, "num_register_tokens", 0) or 0)

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = max(round(x.shape[-2] / self.patch), 1) * self.patch
        w = max(round(x.shape[-1] / self.patch), 1) * self.patch
        x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
        tokens = self.model(pixel_values=x).last_hidden_state[:, self.skip:]
        return tokens.transpose(1, 2).reshape(len(x), -1, h // self.patch, w // self.patch)


class TrainModule(nn.Module):
    """The student plus, for feature alignment, a 1x1 projection of one of its encoder levels
    to the frozen encoder's width. One module, so DDP synchronises both."""

    def __init__(self, student: nn.Module, feature_dim: int | None = None, level: int = -2
                 ) -> None:
        super().__init__()
        self.student = student
        self.level = level
        self.proj: nn.Module | None = None
        if feature_dim is not None:
            if not hasattr(student, "forward_features"):
                raise ValueError("feature alignment needs the compact student (arch: compact)")
            width = student.config.widths[level]
            self.proj = nn.Conv2d(width, feature_dim, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.proj is None:
            return self.student(x), None
        pred, feats = self.student.forward_features(x)
        return pred, self.proj(feats[self.level])


def feature_loss(feats: torch.Tensor, encoder: FrozenEncoder, x: torch.Tensor,
                 cfg: LossConfig) -> torch.Tensor:
    """Feature alignment of projected student features to the frozen encoder on input ``x``."""
    loss, _ = feature_alignment_loss(feats, encoder(x), margin=cfg.feature_margin)
    return loss
