"""Depth Anything v1 / V2 / V2-metric backend on tiny random-weight models saved like hub repos."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from builders import build_tiny_depth_anything, build_tiny_depth_pro
from PIL import Image

from depthweb.errors import ModelUnavailableError
from depthweb.models.depth_anything import DepthAnythingBackend, preprocess_depth_anything
from depthweb.models.registry import load_backend
from depthweb.models.torch_utils import IMAGENET_MEAN, IMAGENET_STD
from depthweb.types import DepthKind, Intrinsics, IntrinsicsSource

# variant -> (spec name, builder kwargs, kind, max depth)
VARIANTS = {
    "v1": ("depth-anything-small", {"version": 1}, DepthKind.RELATIVE_DISPARITY, None),
    "v2": ("depth-anything-v2-small", {}, DepthKind.RELATIVE_DISPARITY, None),
    "metric-indoor": ("depth-anything-v2-metric-indoor-small", {"metric": True, "max_depth": 20},
                      DepthKind.METRIC_DEPTH, 20.0),
    "metric-outdoor": ("depth-anything-v2-metric-outdoor-small",
                       {"metric": True, "max_depth": 80}, DepthKind.METRIC_DEPTH, 80.0),
}
SIZES = [(375, 1242), (479, 641)]  # KITTI-like, odd


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """Builds each tiny variant once per module: ``weights(variant) -> directory``."""
    root = tmp_path_factory.mktemp("tiny-da")
    built: dict[str, object] = {}

    def get(variant: str):
        if variant not in built:
            built[variant] = build_tiny_depth_anything(root / variant, **VARIANTS[variant][1])
        return built[variant]

    return get


def smooth_image(height: int, width: int, seed: int) -> np.ndarray:
    """A seeded RGB uint8 (H, W, 3) image with smooth structure plus noise."""
    rng = np.random.default_rng(seed)
    coarse = torch.from_numpy(rng.random((1, 3, 5, 7), dtype=np.float32) * 255)
    x = torch.nn.functional.interpolate(coarse, size=(height, width), mode="bilinear")
    x = x[0].permute(1, 2, 0).numpy() + rng.normal(0, 12, (height, width, 3))
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


@pytest.mark.parametrize(("size", "expected"), [((375, 1242), (518, 1722)),
                                                ((479, 641), (518, 700)),
                                                ((1287, 1978), (518, 798))])
def test_preprocessing_matches_the_hub_image_processor(weights, size, expected):
    from transformers.models.dpt.image_processing_pil_dpt import DPTImageProcessorPil

    image = smooth_image(*size, seed=3)
    ours = preprocess_depth_anything([image], "cpu", 518, 14)[0].numpy()
    assert ours.shape == (3, *expected)

    # transformers' DPT processor configured by the preprocessor_config.json the hub repos ship
    cfg = json.loads((weights("v2") / "preprocessor_config.json").read_text())
    cfg.pop("image_processor_type")
    ref = DPTImageProcessorPil(**cfg)(images=image, return_tensors="np")["pixel_values"][0]
    assert ref.shape == ours.shape
    diff = np.abs(ours - ref)
    # PIL resizes uint8 in two passes with 8-bit rounding in between: <= 4 grey levels apart
    assert diff.mean() < 0.01 and diff.max() < 4.5 / 255 / min(IMAGENET_STD)

    # the same PIL bicubic kernel on float data, without any 8-bit rounding
    planes = [Image.fromarray(image[..., c].astype(np.float32), mode="F")
              .resize(expected[::-1], Image.Resampling.BICUBIC) for c in range(3)]
    exact = np.clip(np.stack([np.asarray(p) for p in planes]) / 255.0, 0, 1)
    exact = (exact - np.array(IMAGENET_MEAN)[:, None, None]) / np.array(IMAGENET_STD)[:, None, None]
    # the CPU path resizes uint8 in two separable passes like PIL: within a grey level on
    # average, a few grey levels at worst
    err = np.abs(ours - exact) * min(IMAGENET_STD) * 255  # in grey levels
    assert err.mean() < 0.6 and np.percentile(err, 99.9) < 1.5 and err.max() < 4.5


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_output_at_input_size_with_kind(weights, variant, size):
    name, _, kind, max_depth = VARIANTS[variant]
    backend = load_backend(name, weights=weights(variant), device="cpu")
    assert isinstance(backend, DepthAnythingBackend)
    result = backend.infer_image(smooth_image(*size, seed=1))

    assert result.depth.shape == size and result.depth.dtype == np.float32
    assert result.kind is kind and result.model == name
    assert result.weights == str(weights(variant).resolve())
    assert np.isfinite(result.depth).all() and result.depth.std() > 0
    if max_depth is None:
        assert result.unit == "relative" and result.depth.min() >= 0
    else:
        assert result.unit == "m"
        assert result.depth.min() > 0 and result.depth.max() <= max_depth
    cam = result.intrinsics  # no camera given: an assumed FOV, stated as such
    assert cam.source is IntrinsicsSource.ASSUMED_FOV and "assumed" in cam.note
    assert (cam.cx, cam.cy) == (size[1] / 2, size[0] / 2)
    assert result.confidence is None
    assert set(result.timings_ms) == {"preprocess", "forward", "postprocess"}
    assert all(t >= 0 for t in result.timings_ms.values())


def test_metric_head_applies_max_depth(weights):
    image = smooth_image(240, 320, seed=5)
    indoor = load_backend(VARIANTS["metric-indoor"][0], weights=weights("metric-indoor"),
                          device="cpu").infer_image(image)
    outdoor = load_backend(VARIANTS["metric-outdoor"][0], weights=weights("metric-outdoor"),
                           device="cpu").infer_image(image)
    # same seed and calibration: the two checkpoints differ only in max_depth (20 vs 80)
    np.testing.assert_allclose(outdoor.depth, 4.0 * indoor.depth, rtol=1e-4)


def test_batch_equals_single_and_keeps_order(weights):
    backend = load_backend("depth-anything-v2-small", weights=weights("v2"), device="cpu")
    images = [smooth_image(200, 300, seed=s) for s in range(3)]
    images.insert(1, smooth_image(150, 260, seed=9))  # another shape in the middle
    batch = backend.infer_batch(images)
    assert [r.depth.shape for r in batch] == [im.shape[:2] for im in images]
    for image, result in zip(images, batch, strict=True):
        single = backend.infer_image(image).depth
        scale = float(np.abs(single).max())
        np.testing.assert_allclose(result.depth, single, atol=1e-4 * scale)
    assert not np.allclose(batch[0].depth, batch[2].depth)


def test_known_intrinsics_pass_through(weights):
    backend = load_backend("depth-anything-v2-small", weights=weights("v2"), device="cpu")
    images = [smooth_image(120, 160, seed=s) for s in range(2)]
    user = Intrinsics.from_focal(160, 120, 150.0, IntrinsicsSource.USER)
    results = backend.infer_batch(images, [user, None])
    assert results[0].intrinsics == user
    assert results[1].intrinsics.source is IntrinsicsSource.ASSUMED_FOV
    with pytest.raises(ValueError, match="intrinsics"):
        backend.infer_batch(images, [user])


@pytest.mark.parametrize(("name", "variant"), [("depth-anything-v2-small", "metric-indoor"),
                                               ("depth-anything-v2-metric-indoor-small", "v2"),
                                               ("depth-anything-v2-metric-outdoor-small", "v1")])
def test_head_type_must_match_the_spec(weights, name, variant):
    with pytest.raises(ModelUnavailableError, match=name):
        load_backend(name, weights=weights(variant), device="cpu")


def test_max_depth_mismatch_is_logged(weights, caplog):
    caplog.set_level(logging.WARNING, logger="depthweb.models.depth_anything")
    backend = load_backend("depth-anything-v2-metric-outdoor-small",
                           weights=weights("metric-indoor"), device="cpu")
    assert "max_depth=20" in caplog.text
    assert backend.infer_image(smooth_image(100, 140, seed=2)).depth.max() <= 20.0


def test_other_weights_are_refused(tmp_path):
    with pytest.raises(ModelUnavailableError, match="depth_pro"):
        load_backend("depth-anything-v2-small", weights=build_tiny_depth_pro(tmp_path),
                     device="cpu")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelUnavailableError, match=r"config\.json"):
        load_backend("depth-anything-v2-small", weights=tmp_path / "empty", device="cpu")


def test_rejects_non_rgb_input(weights):
    backend = load_backend("depth-anything-v2-small", weights=weights("v2"), device="cpu")
    with pytest.raises(ValueError, match="RGB uint8"):
        backend.infer_image(np.zeros((10, 10), dtype=np.uint8))


def test_real_kitti_frame(weights, shared_data):
    from depthweb.imaging import load_image

    frame = sorted((shared_data / "kitti" / "rgb").glob("*.png"))[0]
    image = load_image(frame).rgb
    assert image.shape == (375, 1242, 3)
    result = load_backend("depth-anything-v2-small", weights=weights("v2"),
                          device="cpu").infer_image(image)
    assert result.depth.shape == (375, 1242)
    assert result.kind is DepthKind.RELATIVE_DISPARITY
    assert np.isfinite(result.depth).all() and result.depth.std() > 0
