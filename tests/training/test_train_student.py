"""Student networks, saving/loading, the served backend and feature alignment in the loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from depthweb.errors import ModelUnavailableError
from depthweb.models.registry import load_backend
from depthweb.training.config import config_from_dict
from depthweb.training.loop import train
from depthweb.training.student import (
    CompactStudent,
    StudentConfig,
    build_student,
    load_student,
    save_student,
)
from depthweb.types import DepthKind, IntrinsicsSource

SMALL = StudentConfig(widths=[8, 12, 16], input_size=32)


def _saved_compact(tmp_path, config: StudentConfig = SMALL):
    torch.manual_seed(0)
    model = CompactStudent(config).eval()
    return model, save_student(model, tmp_path / "student", {"note": "test"})


@pytest.mark.parametrize("size", [(32, 48), (37, 50)])
def test_compact_student_output_at_input_size(size):
    model = CompactStudent(SMALL).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, *size))
    assert out.shape == (2, *size) and torch.isfinite(out).all()


def test_save_and_load_round_trip(tmp_path):
    model, path = _saved_compact(tmp_path)
    loaded = load_student(path)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(x), loaded(x))
    assert (path / "model.safetensors").stat().st_size < 25e6


def test_depth_anything_student_trains_and_saves(tmp_path):
    torch.manual_seed(0)
    model = build_student(StudentConfig(arch="depth_anything", da_size="tiny"))
    out = model(torch.randn(1, 3, 30, 44))
    assert out.shape == (1, 30, 44)
    path = save_student(model, tmp_path / "da")
    loaded = load_student(path)
    x = torch.randn(1, 3, 28, 42)
    with torch.no_grad():
        assert torch.allclose(model.eval()(x), loaded(x), atol=1e-5)


def test_backend_loads_through_the_registry(tmp_path):
    model, path = _saved_compact(tmp_path)
    backend = load_backend("depthweb-student", weights=path, device="cpu")
    rgb = np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    res = backend.infer_image(rgb)
    assert res.depth.shape == (50, 70) and res.kind is DepthKind.RELATIVE_DISPARITY
    assert res.intrinsics.source is IntrinsicsSource.ASSUMED_FOV
    assert np.isfinite(res.depth).all() and res.depth.std() > 0
    assert res.model == "depthweb-student" and str(path) in res.weights
    # the same numbers as the network on the same preprocessing
    from depthweb.models.torch_utils import (
        IMAGENET_MEAN,
        IMAGENET_STD,
        lower_bound_size,
        normalize,
        resize,
        to_tensor,
        upsample_prediction,
    )

    x = to_tensor([rgb], "cpu")
    x = normalize(resize(x, lower_bound_size(50, 70, 32, 32), "bicubic").clamp(0, 1),
                  IMAGENET_MEAN, IMAGENET_STD)
    with torch.no_grad():
        direct = upsample_prediction(model(x), (50, 70))[0]
    assert np.allclose(res.depth, direct, atol=1e-5)


def test_backend_refuses_other_weights(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ModelUnavailableError, match="not a depthweb student"):
        load_backend("depthweb-student", weights=tmp_path, device="cpu")


def _tiny_dinov2(path):
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    config = Dinov2Config(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                          intermediate_size=32, patch_size=14, image_size=28)
    Dinov2Model(config).save_pretrained(path)
    return path


def test_feature_alignment_to_a_frozen_encoder_in_the_loop(tmp_path):
    encoder_dir = _tiny_dinov2(tmp_path / "dinov2")
    cfg = config_from_dict({
        "model": {"widths": [8, 12, 16]}, "image_size": [28, 42], "batch_size": 2, "steps": 2,
        "threads": 1, "checkpoint_every": 1,
        "data": [{"type": "synthetic", "count": 2, "seed": 0}],
        "loss": {"feature_weight": 1.0, "feature_encoder": str(encoder_dir),
                 "feature_margin": 0.85, "feature_level": -1},
    })
    first = train(cfg, tmp_path / "run", progress=False)
    assert first.steps == 2 and np.isfinite(first.last_loss)
    state = torch.load(tmp_path / "run" / "checkpoints" / "step_0000002" / "trainer_state.pt",
                       weights_only=True)
    assert state["aux"]["proj"]["weight"].shape == (16, 16, 1, 1)  # the projection is saved
