"""Tiny random-weight transformers depth models, saved like the hub repos (functions only).

Each builder writes ``config.json``, ``model.safetensors`` and the hub's
``preprocessor_config.json`` into a new directory under ``tmp_dir`` and returns it, so tests load
them through the same code path as downloaded weights
(``registry.load_backend(name, weights=dir)``). Weights are seeded (``torch.manual_seed``). A
freshly initialised head predicts a near-constant map, so the last convolution of each head is
rescaled on a fixed calibration input: outputs then vary across the image and sit in a plausible
range (relative mostly > 0, metric inside (0, max_depth), Depth Pro canonical inverse depth about
0.2 and FOV about ``fov_deg``).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

DINOV2_TINY = {
    "model_type": "dinov2",
    "hidden_size": 32,
    "num_hidden_layers": 4,
    "num_attention_heads": 2,
    "mlp_ratio": 2,
}


def _randomize(model: nn.Module) -> None:
    """PyTorch's default init for convolutions and linears (O(1) activations, unlike HF's 0.02)."""
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            module.reset_parameters()


def _calibrate(model: nn.Module, conv: nn.Conv2d, x: torch.Tensor, mean: float, std: float) -> None:
    """Rescale ``conv`` (one output channel) so its output over ``x`` has this mean and std."""
    captured: list[torch.Tensor] = []
    handle = conv.register_forward_hook(lambda _m, _i, out: captured.append(out.detach()))
    with torch.no_grad():
        model(pixel_values=x)
        handle.remove()
        out = captured[0]
        if float(out.std()) < 1e-6:
            raise RuntimeError(f"{conv} gives a constant output; cannot calibrate it")
        scale = std / float(out.std())
        conv.weight.mul_(scale)
        conv.bias.copy_((conv.bias - out.mean()) * scale + mean)


def _calibration_input(height: int, width: int, mean: float, std: float) -> torch.Tensor:
    """Four smooth seeded images (4, 3, height, width), normalised with ``mean`` / ``std``."""
    gen = torch.Generator().manual_seed(1234)
    coarse = torch.rand(4, 3, 6, 8, generator=gen)
    x = nn.functional.interpolate(coarse, size=(height, width), mode="bilinear")
    return (x - mean) / std


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")


def build_tiny_depth_anything(
    tmp_dir: str | Path, *, metric: bool = False, max_depth: float = 20.0, version: int = 2
) -> Path:
    """A tiny ``DepthAnythingForDepthEstimation`` (Dinov2 backbone, hidden 32, 4 layers, patch 14).

    ``version=1`` writes a config without ``depth_estimation_type`` / ``max_depth``, as the v1 hub
    repos (made before the metric heads existed) do. ``metric=True`` builds a V2 metric head
    (``sigmoid * max_depth``; transformers stores ``max_depth`` as an int).
    """
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config

    if version not in (1, 2) or (metric and version == 1):
        raise ValueError(f"no Depth Anything v{version} {'metric' if metric else 'relative'} model")
    if metric and not float(max_depth).is_integer():
        raise ValueError(f"transformers stores max_depth as an int, got {max_depth}")
    backbone = Dinov2Config(
        **{k: v for k, v in DINOV2_TINY.items() if k != "model_type"},
        patch_size=14, image_size=518, out_indices=[1, 2, 3, 4], reshape_hidden_states=False,
    )
    config = DepthAnythingConfig(
        backbone_config=backbone, reassemble_hidden_size=32, neck_hidden_sizes=[4, 8, 16, 16],
        fusion_hidden_size=8, head_hidden_size=4,
        depth_estimation_type="metric" if metric else "relative",
        max_depth=int(max_depth) if metric else 1,
    )
    torch.manual_seed(version)
    model = DepthAnythingForDepthEstimation(config).eval()
    _randomize(model)
    x = _calibration_input(238, 322, 0.45, 0.225)
    _calibrate(model, model.head.conv3, x, mean=0.0 if metric else 2.0, std=1.0)

    out = Path(tmp_dir) / f"tiny-depth-anything-v{version}-{'metric' if metric else 'relative'}"
    model.save_pretrained(out)
    if version == 1:
        cfg = json.loads((out / "config.json").read_text())
        for key in ("depth_estimation_type", "max_depth"):
            cfg.pop(key, None)
        _write_json(out / "config.json", cfg)
    _write_json(out / "preprocessor_config.json", {
        "do_normalize": True, "do_pad": False, "do_rescale": True, "do_resize": True,
        "ensure_multiple_of": 14, "image_mean": [0.485, 0.456, 0.406],
        "image_processor_type": "DPTImageProcessor", "image_std": [0.229, 0.224, 0.225],
        "keep_aspect_ratio": True, "resample": 3, "rescale_factor": 1 / 255,
        "size": {"height": 518, "width": 518}, "size_divisor": None,
    })
    return out


def build_tiny_depth_pro(
    tmp_dir: str | Path, use_fov_model: bool = True, *, fov_deg: float = 55.0
) -> Path:
    """A tiny ``DepthProForDepthEstimation`` with the released model's structure, scaled down.

    Same three-level patch pyramid (ratios 0.25/0.5/1, overlaps 0/0.5/0.25, 1 + 9 + 25 patches)
    and two intermediate hooks, with Dinov2 encoders (hidden 32, 4 layers, patch 16) on 64 px
    patches: a 256x256 canvas (1536 for the real model) and a 256x256 prediction. The FOV head,
    when present, predicts about ``fov_deg`` (pass an implausible value to test the fallback).
    """
    from transformers import DepthProConfig, DepthProForDepthEstimation

    encoder = {**DINOV2_TINY, "patch_size": 16, "image_size": 64}
    config = DepthProConfig(
        patch_size=64, fusion_hidden_size=16, intermediate_hook_ids=[3, 1],
        intermediate_feature_dims=[8, 8], scaled_images_ratios=[0.25, 0.5, 1.0],
        scaled_images_overlap_ratios=[0.0, 0.5, 0.25], scaled_images_feature_dims=[16, 16, 8],
        use_fov_model=use_fov_model, num_fov_head_layers=2,
        image_model_config=dict(encoder), patch_model_config=dict(encoder),
        fov_model_config=dict(encoder),
    )
    torch.manual_seed(0)
    model = DepthProForDepthEstimation(config).eval()
    _randomize(model)
    x = _calibration_input(256, 256, 0.5, 0.5)
    _calibrate(model, model.head.layers[4], x, mean=0.2, std=0.05)
    if use_fov_model:  # keep the FOV head's narrow ReLU stack (8 -> 4 -> 2 channels) alive
        for layer in model.fov_model.head.layers[:-1]:
            if isinstance(layer, nn.Conv2d):
                nn.init.constant_(layer.bias, 0.1)
        _calibrate(model, model.fov_model.head.layers[-1], x, mean=fov_deg, std=1.0)

    out = Path(tmp_dir) / f"tiny-depth-pro{'' if use_fov_model else '-nofov'}"
    model.save_pretrained(out)
    _write_json(out / "preprocessor_config.json", {
        "do_normalize": True, "do_rescale": True, "do_resize": True,
        "image_mean": [0.5, 0.5, 0.5], "image_processor_type": "DepthProImageProcessorFast",
        "image_std": [0.5, 0.5, 0.5], "resample": 2, "rescale_factor": 1 / 255,
        "size": {"height": 256, "width": 256},
    })
    return out
