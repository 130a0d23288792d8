"""The torch path of the ONNX backends (onnx2torch) matches ONNX Runtime on the tiny exports,
and converts the operators the real exports are made of; ``auto`` picks the path per device."""

from __future__ import annotations

import os
import sys
import warnings

import numpy as np
import pytest
import torch
from onnx_builders import export_tiny_metric3d, export_tiny_unidepth
from torch import nn

from depthweb.config import get_settings
from depthweb.models.onnx_torch import TorchGraph, onnx2torch_available
from depthweb.models.onnx_utils import OnnxModel, runtime_for
from depthweb.models.registry import clear_cache, load_backend
from depthweb.types import Intrinsics, IntrinsicsSource

# CI installs onnx2torch (scripts/test.sh): there a missing converter fails instead of skipping
pytestmark = pytest.mark.skipif(not onnx2torch_available() and not os.environ.get("CI"),
                                reason="onnx2torch is not installed (scripts/test.sh installs it)")

EXPORTS = {
    "metric3d-v2": ("metric3d-v2-vit-small", lambda p: export_tiny_metric3d(p / "model.onnx")),
    "metric3d-v1": ("metric3d-v1-convnext-large",
                    lambda p: export_tiny_metric3d(p / "metric3d_convnext_large.onnx", version=1)),
    "unidepth-2024": ("unidepth-v2-vits14",
                      lambda p: export_tiny_unidepth(p / "unidepthv2.onnx", shape=(98, 126))),
    "unidepth-2024-K": ("unidepth-v2-vits14", lambda p: export_tiny_unidepth(
        p / "unidepthv2.onnx", shape=(98, 126), with_camera=True)),
    "unidepth-current": ("unidepth-v2-vits14", lambda p: export_tiny_unidepth(
        p / "unidepthv2.onnx", shape=(98, 126), export="current")),
    "unidepth-current-rays": ("unidepth-v2-vits14", lambda p: export_tiny_unidepth(
        p / "unidepthv2.onnx", shape=(98, 126), with_camera=True, export="current")),
}


def photo(h: int = 120, w: int = 160) -> np.ndarray:
    rng = np.random.default_rng(7)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def predict(name: str, weights, runtime: str, monkeypatch, known: Intrinsics | None):
    monkeypatch.setenv("DEPTHWEB_ONNX_RUNTIME", runtime)
    get_settings.cache_clear()
    clear_cache()
    backend = load_backend(name, weights=weights, device="cpu")
    assert backend.model.runtime == ("torch:cpu" if runtime == "torch" else "CPUExecutionProvider")
    return backend.infer_image(photo(), known)


@pytest.mark.parametrize("export", list(EXPORTS))
def test_torch_conversion_matches_onnx_runtime(export, tmp_path, monkeypatch):
    name, write = EXPORTS[export]
    write(tmp_path)
    known = Intrinsics(150.0, 148.0, 80.0, 61.0, IntrinsicsSource.USER)
    ort_res = predict(name, tmp_path, "onnxruntime", monkeypatch, known)
    torch_res = predict(name, tmp_path, "torch", monkeypatch, known)
    np.testing.assert_allclose(torch_res.depth, ort_res.depth, rtol=1e-5, atol=1e-6)
    for field in ("confidence", "normals"):
        a, b = getattr(ort_res, field), getattr(torch_res, field)
        assert (a is None) == (b is None)
        if a is not None:
            np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5)
    assert torch_res.intrinsics == ort_res.intrinsics and torch_res.notes == ort_res.notes


class RealExportOps(nn.Module):
    """A few layers built like the real exports (DINOv2 ViT + DPT-style heads): patch conv,
    LayerNorm, softmax attention, GELU (Erf), bilinear Resize, Transpose/Reshape, Sqrt, Exp."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.patch = nn.Conv2d(3, 16, 7, stride=7)
        self.norm = nn.LayerNorm(16)
        self.qkv = nn.Linear(16, 48)
        self.mlp = nn.Sequential(nn.Linear(16, 32), nn.GELU(), nn.Linear(32, 16))
        self.head = nn.Conv2d(16, 4, 3, padding=1)

    def forward(self, x: torch.Tensor):
        b, _, h, w = x.shape
        t = self.patch(x)
        gh, gw = t.shape[-2:]
        t = t.flatten(2).transpose(1, 2)
        q, k, v = self.qkv(self.norm(t)).chunk(3, dim=-1)
        attn = torch.softmax(q @ k.transpose(1, 2) / 4.0, dim=-1)
        t = t + attn @ v
        t = t + self.mlp(self.norm(t))
        f = t.transpose(1, 2).reshape(b, 16, gh, gw)
        f = nn.functional.interpolate(self.head(f), size=(h, w), mode="bilinear",
                                      align_corners=False)
        depth = torch.exp(f[:, :1])
        normal = f[:, 1:4] / torch.sqrt((f[:, 1:4] ** 2).sum(dim=1, keepdim=True) + 1e-6)
        return depth, normal


def test_operators_of_the_real_exports_convert(tmp_path):
    path = tmp_path / "ops.onnx"
    x = torch.rand(2, 3, 56, 70)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(RealExportOps().eval(), (x,), str(path), input_names=["rgbs"],
                          output_names=["depth", "normal"], opset_version=14, dynamo=False,
                          dynamic_axes={"rgbs": {0: "batch"}})
    ort_model = OnnxModel.open(path, "cpu", runtime="onnxruntime")
    torch_model = OnnxModel.open(path, "cpu", runtime="torch")
    assert isinstance(torch_model.session, TorchGraph)
    assert torch_model.inputs == ort_model.inputs and torch_model.outputs == ort_model.outputs
    feeds = {"rgbs": np.random.default_rng(1).random((2, 3, 56, 70), dtype=np.float32)}
    want = ort_model.run(feeds, ["depth", "normal"])
    got = torch_model.run(feeds, ["normal", "depth"])
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=1e-5)


def test_auto_runtime_per_device(monkeypatch):
    import onnxruntime as ort

    assert runtime_for("cpu") == "onnxruntime"
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    assert runtime_for("cuda") == "torch"  # ZeroGPU / CPU onnxruntime on a GPU machine
    assert runtime_for("cuda:1", "onnxruntime") == "onnxruntime"
    monkeypatch.setattr(ort, "get_available_providers",
                        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert runtime_for("cuda") == "onnxruntime"  # onnxruntime-gpu on dedicated hardware
    monkeypatch.setenv("DEPTHWEB_ONNX_RUNTIME", "torch")
    get_settings.cache_clear()
    assert runtime_for("cuda") == "torch" and runtime_for("cpu") == "torch"
    with pytest.raises(Exception, match="Unknown ONNX runtime 'tensorrt'"):
        runtime_for("cuda", "tensorrt")


def test_the_torchvision_stand_in_leaves_no_trace():
    from depthweb.models.onnx_torch import import_onnx2torch

    import_onnx2torch()
    module = sys.modules.get("torchvision")
    assert module is None or getattr(module, "__spec__", None) is not None
