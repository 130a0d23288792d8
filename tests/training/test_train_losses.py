"""Losses on hand-computable cases: invariances, the top-10 % rule, CutMix bookkeeping."""

from __future__ import annotations

import math

import pytest
import torch

from depthweb.training.losses import (
    cutmix_loss,
    feature_alignment_loss,
    fit_scale_shift_torch,
    gradient_matching_loss,
    masked_median,
    normalize_ssi,
    silog_loss,
    ssi_loss,
    trimmed_mean,
    weighted_mean,
)
from depthweb.training.perturb import Box, box_mask


def _rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _row(values: list[float]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64).view(1, 1, -1)


def test_masked_median_and_normalisation_by_hand():
    x = _row([4.0, 1.0, 3.0, 2.0, 100.0])
    mask = torch.tensor([[[True, True, True, True, False]]])
    assert masked_median(x, mask).item() == 2.0  # lower median of 1, 2, 3, 4
    # median 2, mean |x - 2| over 4 valid = (2 + 1 + 1 + 0) / 4 = 1
    assert torch.allclose(normalize_ssi(x, mask, eps=0)[mask], torch.tensor(
        [2.0, -1.0, 1.0, 0.0], dtype=torch.float64))


def test_ssi_loss_hand_computed():
    target, pred = _row([1.0, 2.0, 3.0, 4.0]), _row([0.0, 0.0, 0.0, 4.0])
    mask = torch.ones_like(target, dtype=torch.bool)
    # target -> [-1, 0, 1, 2]; pred: median 0, MAD 1 -> [0, 0, 0, 4]; |diff| = [1, 0, 1, 2]
    assert ssi_loss(pred, target, mask).item() == pytest.approx(1.0, abs=1e-5)
    # trim 0.25 of 4 pixels drops the largest (2): mean of [1, 0, 1]
    assert ssi_loss(pred, target, mask, trim=0.25).item() == pytest.approx(2 / 3, abs=1e-5)


@pytest.mark.parametrize("align", ["median", "lstsq"])
def test_ssi_loss_invariant_to_scale_and_shift(align):
    pred, target = _rand(2, 12, 16, seed=1), _rand(2, 12, 16, seed=2) + 0.1
    mask = _rand(2, 12, 16, seed=3) > 0.2
    base = ssi_loss(pred, target, mask, align=align)
    assert base.min() > 0.1
    assert torch.allclose(ssi_loss(3.0 * pred + 7.0, target, mask, align=align), base, atol=1e-6)
    assert torch.allclose(ssi_loss(pred, 0.5 * target - 2.0, mask, align=align), base, atol=1e-6)
    exact = ssi_loss(2.5 * target - 1.0, target, mask, align=align)
    assert torch.allclose(exact, torch.zeros(2, dtype=torch.float64), atol=1e-5)


def test_ssi_loss_ignores_masked_pixels():
    pred, target = _rand(1, 8, 8, seed=4), _rand(1, 8, 8, seed=5)
    mask = torch.ones(1, 8, 8, dtype=torch.bool)
    mask[0, :2] = False
    wild = pred.clone()
    wild[0, :2] = 1e6
    assert torch.allclose(ssi_loss(wild, target, mask), ssi_loss(pred, target, mask))


def test_trimmed_mean_drops_exactly_the_top_ten_percent():
    values = torch.arange(1.0, 11.0, dtype=torch.float64).view(1, 2, 5)  # 1..10
    mask = torch.ones_like(values, dtype=torch.bool)
    assert trimmed_mean(values, mask, 0.1).item() == pytest.approx(5.0)  # mean of 1..9
    assert trimmed_mean(values, mask, 0.0).item() == pytest.approx(5.5)
    # 20 valid pixels -> drop 2; per-image trim as a tensor
    big = torch.cat([torch.arange(1.0, 21.0).view(1, 4, 5), torch.arange(1.0, 21.0).view(1, 4, 5)])
    out = trimmed_mean(big.double(), torch.ones(2, 4, 5, dtype=torch.bool),
                       torch.tensor([0.1, 0.0]))
    assert out.tolist() == pytest.approx([9.5, 10.5])  # mean of 1..18, of 1..20


def test_trimmed_mean_counts_only_valid_pixels():
    values = torch.tensor([[[1.0, 2.0, 3.0, 1000.0] + [5.0] * 6 + [-50.0]]])
    mask = torch.ones_like(values, dtype=torch.bool)
    mask[0, 0, -1] = False  # 10 valid pixels; the outlier 1000 is the 10 % dropped
    assert trimmed_mean(values, mask, 0.1).item() == pytest.approx((1 + 2 + 3 + 30) / 9)


def test_gradient_matching_zero_for_affine_and_hand_case():
    target = _rand(1, 16, 16, seed=6)
    mask = torch.ones_like(target, dtype=torch.bool)
    assert gradient_matching_loss(4 * target + 1, target, mask).item() == pytest.approx(0, abs=1e-4)
    # lstsq alignment of a 1x4 row: the residual r = pred_aligned - target_n; one scale
    t, p = _row([0.0, 1.0, 2.0, 3.0]), _row([0.0, 1.0, 2.0, 4.0])
    s, b = fit_scale_shift_torch(p, normalize_ssi(t, torch.ones_like(t, dtype=torch.bool)),
                                 torch.ones_like(t, dtype=torch.bool))
    r = s * p[0, 0] + b - normalize_ssi(t, torch.ones_like(t, dtype=torch.bool))[0, 0]
    expected = (r[1:] - r[:-1]).abs().sum() / 4
    got = gradient_matching_loss(p, t, torch.ones_like(t, dtype=torch.bool), scales=1,
                                 align="lstsq")
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)


def test_fit_scale_shift_torch_recovers_affine_map():
    pred = _rand(3, 5, 7, seed=7)
    target = 2.5 * pred - 0.75
    s, t = fit_scale_shift_torch(pred, target, torch.ones_like(pred, dtype=torch.bool))
    assert torch.allclose(s, torch.full((3,), 2.5, dtype=torch.float64))
    assert torch.allclose(t, torch.full((3,), -0.75, dtype=torch.float64))


def test_silog_by_hand_and_scale_invariance():
    target = torch.ones(1, 2, 2, dtype=torch.float64)
    pred = torch.tensor([[[2.0, 2.0], [1.0, 1.0]]], dtype=torch.float64)
    mask = torch.ones_like(target, dtype=torch.bool)
    # g = [ln2, ln2, 0, 0]: mean(g^2) = ln2^2/2, mean(g)^2 = ln2^2/4
    expected = math.log(2) * math.sqrt(0.5 - 0.5 * 0.25)
    assert silog_loss(pred, target, mask, lam=0.5).item() == pytest.approx(expected, rel=1e-6)
    depth = _rand(1, 6, 6, seed=8) + 0.5
    full = torch.ones(1, 6, 6, dtype=torch.bool)
    assert silog_loss(3.0 * depth, depth, full, lam=1.0).item() < 1e-5
    assert silog_loss(3.0 * depth, depth, full, lam=0.5).item() > 0.5  # lam < 1: scale counts


def test_feature_alignment_skips_pixels_within_margin():
    teacher = torch.zeros(1, 2, 1, 4)
    teacher[:, 0] = 1.0  # every teacher feature is (1, 0)
    student = teacher.clone()
    student[0, :, 0, 2:] = torch.tensor([0.0, 1.0])[:, None]  # two pixels orthogonal: cos 0
    student.requires_grad_(True)
    loss, counted = feature_alignment_loss(student, teacher, margin=0.85)
    assert counted.tolist() == [[[False, False, True, True]]]
    assert loss.item() == pytest.approx(1.0)
    loss.backward()
    assert student.grad[0, :, 0, :2].abs().sum() == 0  # skipped pixels get no gradient
    assert student.grad[0, :, 0, 2:].abs().sum() > 0
    none, counted = feature_alignment_loss(teacher.clone().requires_grad_(True), teacher)
    assert none.item() == 0.0 and not counted.any()


def test_weighted_mean_uses_weights_and_ignores_empty_images():
    per_image = torch.tensor([1.0, 3.0, 100.0])
    out = weighted_mean(per_image, torch.tensor([1.0, 3.0, 5.0]), torch.tensor([10, 10, 0]))
    assert out.item() == pytest.approx((1 + 9) / 4)


def test_cutmix_loss_region_bookkeeping():
    h, w = 6, 8
    target_a, target_b = _rand(1, h, w, seed=9) + 0.1, _rand(1, h, w, seed=10) + 0.1
    mask_a = torch.ones(1, h, w, dtype=torch.bool)
    mask_b = torch.ones(1, h, w, dtype=torch.bool)
    mask_a[0, 0, :] = False  # 8 invalid pixels of source a, all outside the box
    mask_b[0, 2, 2] = False  # 1 invalid pixel of source b, inside the box
    inside = box_mask(h, w, Box(1, 4, 2, 6))[None]  # 3 x 4 = 12 pixels
    # each region an exact (but different) affine map of its own source's label
    pred = torch.where(inside, 5.0 * target_b - 3.0, 2.0 * target_a + 1.0)
    loss, book = cutmix_loss(pred, target_a, mask_a, target_b, mask_b, inside)
    assert book.pixels_a.item() == h * w - 12 - 8
    assert book.pixels_b.item() == 12 - 1
    assert loss.item() == pytest.approx(0.0, abs=1e-5)
    mixed_label = torch.where(inside, target_b, target_a)  # one alignment for both: not exact
    assert ssi_loss(pred, mixed_label, mask_a & mask_b).item() > 0.05
    # corrupt region b only: the total is its loss weighted by its share of pixels
    bad = torch.where(inside, _rand(1, h, w, seed=11), pred)
    loss, book = cutmix_loss(bad, target_a, mask_a, target_b, mask_b, inside)
    share = book.pixels_b / (book.pixels_a + book.pixels_b)
    assert book.loss_a.item() == pytest.approx(0.0, abs=1e-5)
    assert loss.item() == pytest.approx((share * book.loss_b).item(), rel=1e-4)
