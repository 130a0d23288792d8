"""Tiny torch networks exported to ONNX with the I/O of the real exports, and their exact maths.

Each network is a closed-form function of its input so tests can predict every output value:

- Metric3D v2 (``onnx-community/metric3d-vit-*``): ``pixel_values`` (B, 3, H, W) float32 0-255,
  dynamic batch/height/width -> ``predicted_depth`` (B, 1, H, W), ``predicted_normal``
  (B, 3, H, W), ``normal_confidence`` (B, H, W). Metric3D v1 (official ``metric3d_onnx_export.py``):
  ``image`` (1, 3, 544, 1216) -> ``pred_depth`` (1, 1, 544, 1216), fixed shape.
  Like the real graphs they normalise inside: ``n = (x - mean) / std`` (ImageNet, 0-255), so the
  mean-coloured padding is ``n = 0``. Canonical depth ``10 * (1 + 0.1 * n_R)`` m; normal
  ``(3 n_R, 0, -3)`` (deliberately not unit length); kappa ``1 + n_G^2``.
- UniDepth V2 (official ``unidepthv2/export.py``): ``image`` (B, 3, H, W) already normalised,
  fixed H, W, dynamic batch [+ ``K`` (B, 3, 3)] -> ``out_K`` (B, 3, 3), ``depth``, ``depth_ssi``,
  ``confidence`` (B, 1, H, W). Depth ``(2 + 0.5 n_R) * s`` with ``s = K[0,0] / 500`` when the
  export takes a camera (else 1); ``out_K`` is the given K, else ``[[f, 0, W/2], [0, f, H/2]]``;
  confidence ``sigmoid(n_G)``. The current export (``export="current"``): ``rgbs`` [+ ``rays``
  (B, 3, H, W) unit rays] -> ``pts_3d`` (B, 3, H, W) = ``(0.1 z, -0.1 z, z)`` with the same depth
  ``z`` (``s`` from the focal the rays encode: ``1 / (x/z at column 1 - x/z at column 0)``),
  ``confidence`` (B, 1, H, W), ``intrinsics`` (B, 3, 3) (``[[f, 0, W/2], [0, f, H/2]]``, ``f``
  from the rays when given); default input 462x630.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

MEAN_255 = (123.675, 116.28, 103.53)
STD_255 = (58.395, 57.12, 57.375)
MEAN_01 = (0.485, 0.456, 0.406)
STD_01 = (0.229, 0.224, 0.225)
UNIDEPTH_REF_FOCAL = 500.0


# --- the closed forms, in numpy, for the tests -------------------------------------------------
def metric3d_normalised(rgb: np.ndarray) -> np.ndarray:
    """RGB (..., 3) in 0-255 -> the graph's normalised values (..., 3)."""
    return (np.asarray(rgb, np.float64) - MEAN_255) / STD_255


def metric3d_canonical(rgb: np.ndarray) -> np.ndarray:
    return 10.0 * (1.0 + 0.1 * metric3d_normalised(rgb)[..., 0])


def metric3d_unit_normal(rgb: np.ndarray) -> np.ndarray:
    r = metric3d_normalised(rgb)[..., 0]
    v = np.stack([r, np.zeros_like(r), -np.ones_like(r)], axis=-1)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def metric3d_kappa(rgb: np.ndarray) -> np.ndarray:
    return 1.0 + metric3d_normalised(rgb)[..., 1] ** 2


def unidepth_normalised(rgb: np.ndarray) -> np.ndarray:
    return (np.asarray(rgb, np.float64) / 255.0 - MEAN_01) / STD_01


def unidepth_depth(rgb: np.ndarray, fx_network: float | None = None) -> np.ndarray:
    scale = 1.0 if fx_network is None else fx_network / UNIDEPTH_REF_FOCAL
    return (2.0 + 0.5 * unidepth_normalised(rgb)[..., 0]) * scale


def unidepth_confidence(rgb: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-unidepth_normalised(rgb)[..., 1]))


# --- the networks ------------------------------------------------------------------------------
class TinyMetric3D(nn.Module):
    def __init__(self, with_normals: bool) -> None:
        super().__init__()
        self.with_normals = with_normals
        self.register_buffer("mean", torch.tensor(MEAN_255).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(STD_255).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor):
        n = (x - self.mean) / self.std
        r, g = n[:, 0:1], n[:, 1:2]
        depth = 10.0 * (1.0 + 0.1 * r)
        if not self.with_normals:
            return depth
        normal = torch.cat([3.0 * r, torch.zeros_like(r), torch.full_like(r, -3.0)], dim=1)
        kappa = 1.0 + g[:, 0] ** 2
        return depth, normal, kappa


class TinyUniDepth(nn.Module):
    def __init__(self, focal_px: float, with_camera: bool) -> None:
        super().__init__()
        self.focal_px = focal_px
        self.with_camera = with_camera

    def forward(self, x: torch.Tensor, k: torch.Tensor | None = None):
        h, w = x.shape[-2:]
        r, g = x[:, 0:1], x[:, 1:2]
        if self.with_camera:
            out_k = k
            scale = (k[:, 0, 0] / UNIDEPTH_REF_FOCAL).view(-1, 1, 1, 1)
        else:
            base = torch.tensor([[self.focal_px, 0.0, w / 2.0], [0.0, self.focal_px, h / 2.0],
                                 [0.0, 0.0, 1.0]])
            out_k = base[None] + 0.0 * x[:, :1, :3, :3].sum(dim=(1, 2, 3)).view(-1, 1, 1)
            scale = torch.ones_like(r[:, :, :1, :1])
        depth = (2.0 + 0.5 * r) * scale
        return out_k, depth, r.clone(), torch.sigmoid(g)


class TinyUniDepthCurrent(nn.Module):
    """The current official export's I/O: ``rgbs`` [+ ``rays``] -> pts_3d, confidence, K."""

    def __init__(self, focal_px: float, with_rays: bool) -> None:
        super().__init__()
        self.focal_px = focal_px
        self.with_rays = with_rays

    def forward(self, x: torch.Tensor, rays: torch.Tensor | None = None):
        h, w = x.shape[-2:]
        r, g = x[:, 0:1], x[:, 1:2]
        if self.with_rays:
            x_over_z = rays[:, 0] / rays[:, 2]
            f = 1.0 / (x_over_z[:, 0, 1] - x_over_z[:, 0, 0])  # (B,)
        else:
            f = torch.full_like(r[:, 0, 0, 0], self.focal_px)
        scale = (f / UNIDEPTH_REF_FOCAL).view(-1, 1, 1, 1) if self.with_rays else 1.0
        z = (2.0 + 0.5 * r) * scale
        k = torch.zeros(x.shape[0], 3, 3) + 0.0 * f.view(-1, 1, 1)
        k[:, 0, 0], k[:, 1, 1] = f, f
        k[:, 0, 2], k[:, 1, 2], k[:, 2, 2] = w / 2.0, h / 2.0, 1.0
        return torch.cat([0.1 * z, -0.1 * z, z], dim=1), torch.sigmoid(g), k


def _export(module: nn.Module, args: tuple, path: Path, inputs: list[str], outputs: list[str],
            dynamic_axes: dict | None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notices
        torch.onnx.export(module.eval(), args, str(path), input_names=inputs,
                          output_names=outputs, dynamic_axes=dynamic_axes, opset_version=17,
                          dynamo=False)
    return path


def export_tiny_metric3d(path: Path, version: int = 2, with_normals: bool = True,
                         rename: dict[str, str] | None = None) -> Path:
    """Write a tiny Metric3D ONNX with the real I/O; ``rename`` maps real names to other ones."""
    rename = rename or {}
    if version == 2:
        names_in, names_out = ["pixel_values"], ["predicted_depth"]
        if with_normals:
            names_out += ["predicted_normal", "normal_confidence"]
        image = torch.rand(1, 3, 28, 42) * 255
        hw = {0: "batch_size", 2: "height", 3: "width"}
        axes = {"pixel_values": hw, "predicted_depth": hw, "predicted_normal": hw,
                "normal_confidence": {0: "batch_size", 1: "height", 2: "width"}}
    else:
        names_in, names_out = ["image"], ["pred_depth"]
        image, axes, with_normals = torch.rand(1, 3, 544, 1216) * 255, None, False
    names_in = [rename.get(n, n) for n in names_in]
    names_out = [rename.get(n, n) for n in names_out]
    if axes is not None:
        axes = {rename.get(k, k): v for k, v in axes.items() if rename.get(k, k) in
                names_in + names_out}
    return _export(TinyMetric3D(with_normals), (image,), path, names_in, names_out, axes)


def export_tiny_unidepth(path: Path, shape: tuple[int, int] | None = None,
                         focal_px: float = 400.0, with_camera: bool = False,
                         rename: dict[str, str] | None = None, export: str = "2024") -> Path:
    """Write a tiny UniDepth V2 ONNX with the official export's I/O (fixed H, W; dynamic batch):
    ``export="2024"`` (``image`` [+ ``K``], default 462x616) or ``"current"`` (``rgbs``
    [+ ``rays``], default 462x630)."""
    if export == "current":
        return _export_current_unidepth(path, shape or (462, 630), focal_px, with_camera,
                                        rename or {})
    rename = rename or {}
    shape = shape or (462, 616)
    args: tuple = (torch.randn(1, 3, *shape),)
    axes = {"image": {0: "batch"}}
    if with_camera:
        args = (*args, torch.tensor([[[500.0, 0, shape[1] / 2], [0, 500.0, shape[0] / 2],
                                      [0, 0, 1]]]))
        axes["K"] = {0: "batch"}
    axes.update({n: {0: "batch"} for n in ("out_K", "depth", "depth_ssi", "confidence")})
    axes = {rename.get(k, k): v for k, v in axes.items()}
    names_in = [rename.get(n, n) for n in (["image", "K"] if with_camera else ["image"])]
    names_out = [rename.get(n, n) for n in ("out_K", "depth", "depth_ssi", "confidence")]
    return _export(TinyUniDepth(focal_px, with_camera), args, path, names_in, names_out, axes)


def _export_current_unidepth(path: Path, shape: tuple[int, int], focal_px: float,
                             with_rays: bool, rename: dict[str, str]) -> Path:
    names_in = ["rgbs", "rays"] if with_rays else ["rgbs"]
    names_out = ["pts_3d", "confidence", "intrinsics"]
    args: tuple = tuple(torch.rand(1, 3, *shape) + 0.1 for _ in names_in)
    axes = {n: {0: "batch"} for n in names_in + names_out}
    axes = {rename.get(k, k): v for k, v in axes.items()}
    return _export(TinyUniDepthCurrent(focal_px, with_rays), args, path,
                   [rename.get(n, n) for n in names_in], [rename.get(n, n) for n in names_out],
                   axes)


def expected_alpha(kappa: np.ndarray) -> np.ndarray:
    """Expected angular error (radians) of a normal with concentration ``kappa`` (Bae 2021)."""
    e = np.exp(-math.pi * kappa)
    return 2 * kappa / (kappa**2 + 1) + math.pi * e / (1 + e)
