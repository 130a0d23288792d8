"""A training step's batch handling: who gets perturbed, CutMix pairs, weights in the loss."""

from __future__ import annotations

import torch

from depthweb.training.config import LossConfig, PerturbConfig
from depthweb.training.objective import batch_loss, prepare_batch


def _batch(pseudo, augment=None, seed=0):
    gen = torch.Generator().manual_seed(seed)
    b = len(pseudo)
    return {"image": torch.rand(b, 3, 16, 20, generator=gen),
            "target": torch.rand(b, 16, 20, generator=gen) + 0.1,
            "valid": torch.ones(b, 16, 20, dtype=torch.bool),
            "weight": torch.ones(b), "pseudo": torch.tensor(pseudo),
            "augment": torch.tensor(augment or [False] * b)}


def test_only_pseudo_and_augment_samples_are_perturbed():
    raw = _batch([False, True, True, False], augment=[False, False, False, True])
    out = prepare_batch(raw, PerturbConfig(cutmix_prob=1.0), hflip=False,
                        generator=torch.Generator().manual_seed(1), device="cpu")
    changed = [(out.image[i] - raw["image"][i]).abs().max().item() > 1e-6 for i in range(4)]
    assert changed == [False, True, True, True]
    assert torch.equal(out.target, raw["target"])  # labels are never perturbed
    assert {(i, j) for i, j, _ in out.mixes} == {(1, 2), (2, 1)}  # CutMix among pseudo only
    for _, _, inside in out.mixes:
        assert 0 < inside.sum() < inside.numel()
    disabled = prepare_batch(raw, PerturbConfig(enabled=False), hflip=False,
                             generator=torch.Generator().manual_seed(1), device="cpu")
    assert torch.equal(disabled.image, raw["image"]) and not disabled.mixes


def test_flips_move_image_and_label_together():
    raw = _batch([False] * 8)
    raw["target"] = raw["image"][:, 0].clone()
    out = prepare_batch(raw, PerturbConfig(), hflip=True,
                        generator=torch.Generator().manual_seed(2), device="cpu")
    assert torch.equal(out.target, out.image[:, 0])
    flipped = [not torch.equal(out.image[i], raw["image"][i]) for i in range(8)]
    assert 0 < sum(flipped) < 8


def test_batch_loss_weights_and_trimming():
    raw = _batch([False, False])
    batch = prepare_batch(raw, PerturbConfig(), hflip=False,
                          generator=torch.Generator().manual_seed(0), device="cpu")
    pred = torch.stack([2 * batch.target[0] + 1, torch.rand(16, 20)])  # exact, then wrong
    cfg = LossConfig()
    both = batch_loss(pred, batch, cfg)
    batch.weight = torch.tensor([1.0, 0.0])
    assert batch_loss(pred, batch, cfg).item() < 1e-4  # the wrong sample has no weight
    batch.weight = torch.tensor([0.0, 1.0])
    assert batch_loss(pred, batch, cfg).item() > both.item()
    batch.pseudo = torch.tensor([False, True])  # pseudo: its 10 % worst pixels are ignored
    assert batch_loss(pred, batch, cfg).item() < batch_loss(pred, batch, LossConfig(
        pseudo_trim=0.0)).item()
