"""Metric3D ONNX backend on tiny exports with the real I/O names: the canonical-camera maths."""

from __future__ import annotations

import math

import numpy as np
import pytest
from onnx_builders import (
    expected_alpha,
    export_tiny_metric3d,
    metric3d_canonical,
    metric3d_kappa,
    metric3d_unit_normal,
)

from depthweb.errors import DepthwebError, ModelUnavailableError
from depthweb.models import onnx_utils
from depthweb.models.metric3d import PAD_RGB, _canvas_input
from depthweb.models.registry import load_backend
from depthweb.types import DepthKind, Intrinsics, IntrinsicsSource

V2 = "metric3d-v2-vit-small"
V1 = "metric3d-v1-convnext-large"
COLOURS = np.array([[(255, 0, 0), (0, 255, 40)], [(30, 60, 90), (200, 128, 255)]], np.uint8)
SIZES = [(375, 1242), (480, 640)]  # KITTI (pads top/bottom) and VGA (pads left/right)


@pytest.fixture(scope="module")
def v2_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("metric3d-v2")
    export_tiny_metric3d(root / "onnx" / "model.onnx", version=2)
    return root


@pytest.fixture(scope="module")
def v1_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("metric3d-v1")
    export_tiny_metric3d(root / "metric3d_convnext_large.onnx", version=1)  # the script's name
    export_tiny_metric3d(root / "model.onnx", version=2)  # a decoy: the spec's file name wins
    return root


def quadrants(h: int, w: int) -> np.ndarray:
    """(h, w, 3) image made of the four COLOURS blocks."""
    img = np.empty((h, w, 3), np.uint8)
    img[: h // 2, : w // 2], img[: h // 2, w // 2 :] = COLOURS[0, 0], COLOURS[0, 1]
    img[h // 2 :, : w // 2], img[h // 2 :, w // 2 :] = COLOURS[1, 0], COLOURS[1, 1]
    return img


def corners(a: np.ndarray) -> np.ndarray:
    """Values at the four corner pixels, shaped like COLOURS' first two axes."""
    return np.array([[a[0, 0], a[0, -1]], [a[-1, 0], a[-1, -1]]])


def network_scale(h: int, w: int, canvas=(616, 1064)) -> float:
    return min(canvas[0] / h, canvas[1] / w)


@pytest.mark.parametrize(("h", "w"), SIZES)
def test_v2_decanonicalises_with_the_focal_of_the_network_input(v2_dir, h, w):
    backend = load_backend(V2, weights=v2_dir)
    k = Intrinsics.from_focal(w, h, 721.5, IntrinsicsSource.USER)
    res = backend.infer_image(quadrants(h, w), k)
    assert res.depth.shape == (h, w) and res.depth.dtype == np.float32
    assert res.kind is DepthKind.METRIC_DEPTH and res.intrinsics == k
    expected = metric3d_canonical(COLOURS) * 721.5 * network_scale(h, w) / 1000.0
    np.testing.assert_allclose(corners(res.depth), expected, rtol=1e-5)
    # the quadrant edge lands where it is in the input: padding was cut at the right pixels
    row = res.depth[h // 4]
    np.testing.assert_allclose(row[w // 2 - 4], expected[0, 0], rtol=1e-5)
    np.testing.assert_allclose(row[w // 2 + 3], expected[0, 1], rtol=1e-5)
    col = res.depth[:, w // 4]
    np.testing.assert_allclose(col[h // 2 - 4], expected[0, 0], rtol=1e-5)
    np.testing.assert_allclose(col[h // 2 + 3], expected[1, 0], rtol=1e-5)
    assert set(res.timings_ms) == {"preprocess", "inference", "postprocess"}


@pytest.mark.parametrize(("h", "w"), SIZES)
def test_v2_normals_are_unit_aligned_and_confidence_is_in_unit_range(v2_dir, h, w):
    res = load_backend(V2, weights=v2_dir).infer_image(quadrants(h, w))
    assert res.normals.shape == (h, w, 3) and res.normals.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(res.normals, axis=-1), 1.0, atol=1e-5)
    for i in range(2):
        for j in range(2):
            got = corners(res.normals[..., 0])[i, j], corners(res.normals[..., 2])[i, j]
            want = metric3d_unit_normal(COLOURS[i, j])
            np.testing.assert_allclose(got, (want[0], want[2]), atol=1e-5)
    assert res.confidence.shape == (h, w)
    assert np.all((res.confidence >= 0) & (res.confidence <= 1))
    want = 1.0 - expected_alpha(metric3d_kappa(COLOURS)) / (math.pi / 2)
    np.testing.assert_allclose(corners(res.confidence), want, atol=1e-5)
    assert any("normal" in n for n in res.notes)


def test_assumed_fov_is_used_and_said(v2_dir):
    h, w = 480, 640
    res = load_backend(V2, weights=v2_dir).infer_image(quadrants(h, w), None)
    assert res.intrinsics.source is IntrinsicsSource.ASSUMED_FOV
    f = 0.5 * w / math.tan(math.radians(60.0) / 2)
    assert res.intrinsics.fx == pytest.approx(f)
    expected = metric3d_canonical(COLOURS) * f * network_scale(h, w) / 1000.0
    np.testing.assert_allclose(corners(res.depth), expected, rtol=1e-5)
    assert any("60.0 deg" in n and "focal length" in n for n in res.notes)


def test_depth_is_clamped_to_300_m(v2_dir):
    k = Intrinsics.from_focal(640, 480, 1e6, IntrinsicsSource.USER)
    res = load_backend(V2, weights=v2_dir).infer_image(quadrants(480, 640), k)
    assert float(res.depth.min()) == 300.0 and float(res.depth.max()) == 300.0


def test_batch_of_mixed_sizes_matches_single_images(v2_dir):
    backend = load_backend(V2, weights=v2_dir)
    images = [quadrants(*SIZES[0]), quadrants(*SIZES[1])[::-1].copy()]
    ks = [Intrinsics.from_focal(1242, 375, 700.0, IntrinsicsSource.EXIF), None]
    batch = backend.infer_batch(images, ks)
    assert [r.depth.shape for r in batch] == [SIZES[0], SIZES[1]]
    for image, k, res in zip(images, ks, batch, strict=True):
        np.testing.assert_allclose(res.depth, backend.infer_image(image, k).depth, rtol=1e-6)
    assert batch[0].intrinsics.source is IntrinsicsSource.EXIF
    assert batch[1].intrinsics.source is IntrinsicsSource.ASSUMED_FOV


def test_a_single_onnx_file_is_accepted_as_weights(v2_dir):
    backend = load_backend(V2, weights=v2_dir / "onnx" / "model.onnx")
    assert backend.weights_path == v2_dir / "onnx" / "model.onnx"
    assert backend.names.image == "pixel_values" and backend.batch_size == 4


def test_v1_official_export_static_canvas_no_normals(v1_dir):
    backend = load_backend(V1, weights=v1_dir)
    assert backend.canvas_hw == (544, 1216) and backend.names.image == "image"
    h, w = 375, 1242
    k = Intrinsics.from_focal(w, h, 707.0, IntrinsicsSource.USER)
    res = backend.infer_image(quadrants(h, w), k)
    expected = metric3d_canonical(COLOURS) * 707.0 * network_scale(h, w, (544, 1216)) / 1000.0
    np.testing.assert_allclose(corners(res.depth), expected, rtol=1e-5)
    assert res.normals is None and res.confidence is None


@pytest.mark.parametrize(
    ("rename", "missing"),
    [({"predicted_depth": "depth"}, "output 'predicted_depth'"),
     ({"pixel_values": "input"}, "input 'pixel_values'")],
)
def test_wrong_io_names_fail_with_one_sentence(tmp_path, rename, missing):
    export_tiny_metric3d(tmp_path / "onnx" / "model.onnx", rename=rename)
    with pytest.raises(DepthwebError) as err:
        load_backend(V2, weights=tmp_path)
    msg = str(err.value)
    assert missing in msg and "Metric3D" in msg
    assert msg.endswith(".") and ". " not in msg and "\n" not in msg


def test_find_onnx_file_rules(tmp_path):
    with pytest.raises(ModelUnavailableError, match=r"No \.onnx file"):
        onnx_utils.find_onnx_file(tmp_path)
    (tmp_path / "a.onnx").write_bytes(b"x")
    assert onnx_utils.find_onnx_file(tmp_path) == tmp_path / "a.onnx"
    (tmp_path / "b.onnx").write_bytes(b"x")
    with pytest.raises(ModelUnavailableError, match="Several"):
        onnx_utils.find_onnx_file(tmp_path)
    assert onnx_utils.find_onnx_file(tmp_path, "b.onnx") == tmp_path / "b.onnx"
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "model.onnx").write_bytes(b"x")
    assert onnx_utils.find_onnx_file(tmp_path) == tmp_path / "sub" / "model.onnx"


def test_providers_follow_the_device(monkeypatch):
    import onnxruntime as ort

    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    assert onnx_utils.providers_for("cuda") == ["CPUExecutionProvider"]
    monkeypatch.setattr(ort, "get_available_providers",
                        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert onnx_utils.providers_for("cuda:1") == [
        ("CUDAExecutionProvider", {"device_id": 1}), "CPUExecutionProvider"]
    assert onnx_utils.providers_for("cpu") == ["CPUExecutionProvider"]


def test_canvas_input_is_0_255_rgb_padded_with_the_mean_colour():
    box = onnx_utils.Letterbox.fit((375, 1242), (616, 1064))
    x = _canvas_input(quadrants(375, 1242), box)
    assert x.shape == (3, 616, 1064) and x.dtype == np.float32 and box.top > 0
    np.testing.assert_array_equal(x[:, 0, 0], np.float32(PAD_RGB))
    np.testing.assert_array_equal(x[:, -1, -1], np.float32(PAD_RGB))
    np.testing.assert_allclose(x[:, box.top + 2, 2], COLOURS[0, 0], atol=1e-3)
    np.testing.assert_allclose(x[:, box.top + box.new_hw[0] - 3, -3], COLOURS[1, 1], atol=1e-3)


@pytest.mark.parametrize(("h", "w"), [(375, 1242), (480, 640), (1000, 100), (616, 1064)])
def test_letterbox_geometry_matches_the_hub_example(h, w):
    box = onnx_utils.Letterbox.fit((h, w), (616, 1064))
    scale = min(616 / h, 1064 / w)
    assert box.scale == scale and box.new_hw == (int(h * scale), int(w * scale))
    assert box.top == (616 - box.new_hw[0]) // 2 and box.left == (1064 - box.new_hw[1]) // 2
    canvas = np.zeros((616, 1064), np.float32)
    canvas[box.top:box.top + box.new_hw[0], box.left:box.left + box.new_hw[1]] = 1.0
    assert np.all(box.unpad(canvas) == 1.0) and box.to_source(canvas).shape == (h, w)
