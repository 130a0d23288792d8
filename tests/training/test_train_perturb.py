"""Strong perturbations: blur, colour jitter and CutMix on seeded tensors."""

from __future__ import annotations

import pytest
import torch

from depthweb.training.perturb import (
    Box,
    color_jitter,
    cutmix,
    gaussian_blur,
    gaussian_kernel1d,
    random_box,
    strong_perturb,
)


def _images(seed: int = 0) -> torch.Tensor:
    return torch.rand(3, 3, 20, 24, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.5])
def test_gaussian_kernel_is_normalised_and_symmetric(sigma):
    k = gaussian_kernel1d(sigma, torch.float64)
    assert k.sum().item() == pytest.approx(1.0)
    assert torch.allclose(k, k.flip(0))


def test_gaussian_blur_keeps_constants_and_smooths_noise():
    const = torch.full((1, 3, 10, 12), 0.3)
    assert torch.allclose(gaussian_blur(const, 1.5), const)
    x = _images()
    blurred = gaussian_blur(x, 1.5)
    assert blurred.shape == x.shape
    assert blurred.std() < 0.6 * x.std()
    assert torch.equal(gaussian_blur(x, 0.0), x)


def test_color_jitter_identity_when_disabled_and_seeded_otherwise():
    x = _images(1)
    same = color_jitter(x, brightness=0, contrast=0, saturation=0, hue_shift=0)
    assert torch.allclose(same, x, atol=1e-6)
    a = color_jitter(x, generator=torch.Generator().manual_seed(3))
    b = color_jitter(x, generator=torch.Generator().manual_seed(3))
    c = color_jitter(x, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= 0 and a.max() <= 1


def test_hue_rotation_keeps_grey_pixels_grey():
    grey = torch.full((2, 3, 4, 4), 0.5)
    out = color_jitter(grey, brightness=0, contrast=0, saturation=0, hue_shift=0.5,
                       generator=torch.Generator().manual_seed(0))
    assert torch.allclose(out, grey, atol=1e-5)


def test_cutmix_pastes_exactly_the_box():
    a, b = torch.zeros(3, 6, 8), torch.ones(3, 6, 8)
    mixed, inside = cutmix(a, b, Box(1, 3, 2, 7))
    assert inside.sum().item() == 2 * 5 == Box(1, 3, 2, 7).area
    assert torch.equal(mixed[:, inside], torch.ones(3, 10))
    assert mixed.sum().item() == 3 * 10


def test_random_box_inside_the_image_with_requested_area():
    gen = torch.Generator().manual_seed(5)
    for _ in range(50):
        box = random_box(30, 40, area=(0.1, 0.5), generator=gen)
        assert 0 <= box.y0 < box.y1 <= 30 and 0 <= box.x0 < box.x1 <= 40
        assert 0.05 <= box.area / (30 * 40) <= 0.6


def test_strong_perturb_changes_images_deterministically():
    x = _images(2)
    a = strong_perturb(x, generator=torch.Generator().manual_seed(1), blur_prob=1.0)
    b = strong_perturb(x, generator=torch.Generator().manual_seed(1), blur_prob=1.0)
    assert torch.equal(a, b)
    assert (a - x).abs().mean() > 0.01
