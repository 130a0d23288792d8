"""Depth Pro backend on tiny random-weight models: preprocessing, the metric maths, the camera."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch
from builders import build_tiny_depth_pro

from depthweb.models.depth_pro import DepthProBackend, canvas_size, preprocess_depth_pro
from depthweb.models.registry import load_backend
from depthweb.types import DepthKind, Intrinsics, IntrinsicsSource

SIZES = [(375, 1242), (479, 641)]
KITTI_FX = 707.0493  # ../shared/data/MANIFEST.md


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """``weights(use_fov_model=True, fov_deg=55.0) -> directory``, each built once per module."""
    built: dict[tuple, object] = {}

    def get(use_fov_model: bool = True, fov_deg: float = 55.0):
        key = (use_fov_model, fov_deg)
        if key not in built:
            built[key] = build_tiny_depth_pro(tmp_path_factory.mktemp("tiny-dp"), use_fov_model,
                                              fov_deg=fov_deg)
        return built[key]

    return get


def backend_for(weights, **kwargs) -> DepthProBackend:
    backend = load_backend("depth-pro", weights=weights(**kwargs), device="cpu")
    assert isinstance(backend, DepthProBackend)
    return backend


def smooth_image(height: int, width: int, seed: int) -> np.ndarray:
    """A seeded RGB uint8 (H, W, 3) image with smooth structure plus noise."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((5, 7, 3), dtype=np.float32) * 255
    x = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_LINEAR)
    return np.clip(np.round(x + rng.normal(0, 12, x.shape)), 0, 255).astype(np.uint8)


def raw_outputs(backend: DepthProBackend, image: np.ndarray) -> tuple[np.ndarray, float | None]:
    """The network's canonical inverse depth (h, w) and FOV (deg) for one image."""
    with torch.inference_mode():
        out = backend.model(pixel_values=preprocess_depth_pro(image, "cpu", backend.canvas))
    fov = None if out.field_of_view is None else float(out.field_of_view[0])
    return out.predicted_depth[0].numpy(), fov


def reference_depth(canonical: np.ndarray, focal_px: float, height: int, width: int) -> np.ndarray:
    """``DepthProImageProcessor.post_process_depth_estimation`` written with numpy and OpenCV."""
    inverse = canonical * width / focal_px
    inverse = cv2.resize(inverse, (width, height), interpolation=cv2.INTER_LINEAR)
    return 1.0 / np.clip(inverse, 1e-4, 1e4)


def test_canvas_and_preprocessing(weights):
    backend = backend_for(weights)
    assert backend.canvas == canvas_size(backend.model.config) == 256  # 64 px / ratio 0.25
    image = smooth_image(375, 1242, seed=0)
    x = preprocess_depth_pro(image, "cpu", 256)[0].numpy()
    assert x.shape == (3, 256, 256)
    normed = (image.astype(np.float32) / 255.0 - 0.5) / 0.5  # normalise first, then resize
    ref = cv2.resize(normed, (256, 256), interpolation=cv2.INTER_LINEAR).transpose(2, 0, 1)
    np.testing.assert_allclose(x, ref, atol=1e-4)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_predicted_fov_path_matches_the_transformers_maths(weights, size):
    height, width = size
    backend = backend_for(weights)
    image = smooth_image(height, width, seed=1)
    result = backend.infer_image(image)

    canonical, fov = raw_outputs(backend, image)
    focal = 0.5 * width / math.tan(0.5 * math.radians(fov))  # the original image's width
    assert result.intrinsics.source is IntrinsicsSource.PREDICTED and not result.notes
    assert result.intrinsics.fx == pytest.approx(focal, rel=1e-5)
    assert result.fov_deg[0] == pytest.approx(fov, abs=1e-6)
    assert 50 < fov < 60  # the builder's head predicts about 55 deg
    assert result.kind is DepthKind.METRIC_DEPTH and result.unit == "m"
    assert result.depth.shape == size and np.isfinite(result.depth).all()
    assert result.depth.min() > 0
    np.testing.assert_allclose(result.depth, reference_depth(canonical, focal, height, width),
                               rtol=1e-4)
    assert set(result.timings_ms) == {"preprocess", "forward", "postprocess"}


@pytest.mark.parametrize("source", [IntrinsicsSource.USER, IntrinsicsSource.EXIF])
def test_known_focal_replaces_the_prediction_and_scales_depth(weights, source):
    height, width = 375, 1242
    backend = backend_for(weights)
    image = smooth_image(height, width, seed=2)
    cam = Intrinsics.from_focal(width, height, KITTI_FX, source)
    once = backend.infer_image(image, cam)
    twice = backend.infer_image(image, Intrinsics.from_focal(width, height, 2 * KITTI_FX, source))

    assert once.intrinsics == cam and not once.notes
    canonical, _ = raw_outputs(backend, image)
    np.testing.assert_allclose(once.depth, reference_depth(canonical, KITTI_FX, height, width),
                               rtol=1e-4)
    # depth = f / (W * c): doubling the focal doubles every depth (clamp inactive here)
    assert once.depth.max() < 1e3
    np.testing.assert_allclose(twice.depth, 2.0 * once.depth, rtol=1e-5)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_without_fov_head_uses_given_or_assumed_focal(weights, size):
    height, width = size
    backend = backend_for(weights, use_fov_model=False)
    assert not backend.has_fov_head
    image = smooth_image(height, width, seed=3)
    result = backend.infer_image(image)
    assert result.intrinsics.source is IntrinsicsSource.ASSUMED_FOV
    assert result.fov_deg[0] == pytest.approx(60.0)
    assert result.notes and "no FOV head" in result.notes[0]
    assert result.depth.shape == size and (result.depth > 0).all()
    canonical, fov = raw_outputs(backend, image)
    assert fov is None
    np.testing.assert_allclose(
        result.depth, reference_depth(canonical, result.intrinsics.fx, height, width), rtol=1e-4)

    user = Intrinsics.from_focal(width, height, 500.0, IntrinsicsSource.USER)
    assert backend.infer_image(image, user).intrinsics == user


def test_implausible_predicted_fov_falls_back_and_says_so(weights):
    height, width = 375, 1242
    backend = backend_for(weights, fov_deg=170.0)  # a head that predicts a 170 deg FOV
    image = smooth_image(height, width, seed=4)
    _, fov = raw_outputs(backend, image)
    assert fov > 150

    result = backend.infer_image(image)
    assert result.intrinsics.source is IntrinsicsSource.ASSUMED_FOV
    assert result.fov_deg[0] == pytest.approx(60.0)
    assert len(result.notes) == 1 and "implausible" in result.notes[0]
    assert f"{fov:.2f} deg" in result.notes[0]
    # the depth is scaled with the focal actually reported
    same = backend.infer_image(image, Intrinsics.from_focal(
        width, height, result.intrinsics.fx, IntrinsicsSource.USER))
    np.testing.assert_allclose(result.depth, same.depth, rtol=1e-6)

    # a given assumed camera is the fallback
    assumed = Intrinsics.from_fov(width, height, 75.0)
    assert backend.infer_image(image, assumed).fov_deg[0] == pytest.approx(75.0)


@pytest.mark.parametrize("bad_fov", [0.0, -20.0, float("nan"), 1.0])
def test_degenerate_fov_outputs_fall_back(weights, monkeypatch, bad_fov):
    backend = backend_for(weights)
    original = backend.model.fov_model.forward
    monkeypatch.setattr(backend.model.fov_model, "forward",
                        lambda *a, **k: torch.full_like(original(*a, **k), bad_fov))
    result = backend.infer_image(smooth_image(200, 300, seed=5))
    assert result.intrinsics.source is IntrinsicsSource.ASSUMED_FOV
    assert result.notes and "implausible" in result.notes[0]
    assert np.isfinite(result.depth).all() and (result.depth > 0).all()


def test_batch_equals_single_with_mixed_shapes(weights):
    backend = backend_for(weights)
    images = [smooth_image(*s, seed=i) for i, s in enumerate([(240, 320), (375, 1242),
                                                              (240, 320), (100, 90), (50, 60)])]
    cams = [None, Intrinsics.from_focal(1242, 375, KITTI_FX, IntrinsicsSource.USER), None, None,
            None]
    batch = backend.infer_batch(images, cams)  # 5 images: two forward passes of <= 4
    for image, cam, result in zip(images, cams, batch, strict=True):
        single = backend.infer_image(image, cam)
        assert result.depth.shape == image.shape[:2]
        assert result.intrinsics.source == single.intrinsics.source
        assert result.intrinsics.fx == pytest.approx(single.intrinsics.fx, rel=1e-5)
        np.testing.assert_allclose(result.depth, single.depth, rtol=1e-4)


def test_real_kitti_frame_with_known_focal(weights, shared_data):
    from depthweb.imaging import load_image

    frame = sorted((shared_data / "kitti" / "rgb").glob("*.png"))[0]
    image = load_image(frame).rgb
    cam = Intrinsics(KITTI_FX, KITTI_FX, 604.0814, 180.5066, IntrinsicsSource.USER)
    result = backend_for(weights).infer_image(image, cam)
    assert result.depth.shape == (375, 1242)
    assert result.kind is DepthKind.METRIC_DEPTH
    assert result.intrinsics == cam
    assert np.isfinite(result.depth).all() and (result.depth > 0).all()
