"""UniDepth V2: ONNX backend on tiny official-style exports, and the thin package adapter."""

from __future__ import annotations

import dataclasses
import math
import sys
import types
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch
from onnx_builders import export_tiny_unidepth, unidepth_confidence, unidepth_depth

from depthweb.errors import DepthwebError, ModelUnavailableError
from depthweb.models.loading import ResolvedWeights
from depthweb.models.onnx_utils import Letterbox
from depthweb.models.registry import get_spec, load_backend
from depthweb.models.unidepth import UniDepthBackend, UniDepthPackageBackend, _network_input
from depthweb.types import DepthKind, Intrinsics, IntrinsicsSource

NAME = "unidepth-v2-vits14"
CANVAS = (462, 616)
COLOURS = np.array([[(255, 0, 0), (0, 255, 40)], [(30, 60, 90), (200, 128, 255)]], np.uint8)
SIZES = [(375, 1242), (480, 640), (640, 480)]  # pads top/bottom, none, left/right


def quadrants(h: int, w: int) -> np.ndarray:
    img = np.empty((h, w, 3), np.uint8)
    img[: h // 2, : w // 2], img[: h // 2, w // 2 :] = COLOURS[0, 0], COLOURS[0, 1]
    img[h // 2 :, : w // 2], img[h // 2 :, w // 2 :] = COLOURS[1, 0], COLOURS[1, 1]
    return img


def corners(a: np.ndarray) -> np.ndarray:
    return np.array([[a[0, 0], a[0, -1]], [a[-1, 0], a[-1, -1]]])


def geometry(h: int, w: int):
    """Independent letterbox numbers: per-axis scales and the top/left padding."""
    s = min(CANVAS[0] / h, CANVAS[1] / w)
    nh, nw = int(h * s), int(w * s)
    return nw / w, nh / h, (CANVAS[1] - nw) // 2, (CANVAS[0] - nh) // 2


def export_to(root: Path, **kwargs) -> Path:
    export_tiny_unidepth(root / "unidepthv2.onnx", shape=CANVAS, **kwargs)
    return root


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    return export_to(tmp_path_factory.mktemp("unidepth"), focal_px=400.0)


@pytest.fixture(scope="module")
def with_camera(tmp_path_factory):
    return export_to(tmp_path_factory.mktemp("unidepth-k"), with_camera=True)


@pytest.mark.parametrize(("h", "w"), SIZES)
def test_depth_confidence_and_predicted_intrinsics_scaled_back(plain, h, w):
    res = load_backend(NAME, weights=plain).infer_image(quadrants(h, w))
    assert res.depth.shape == (h, w) and res.kind is DepthKind.METRIC_DEPTH
    np.testing.assert_allclose(corners(res.depth), unidepth_depth(COLOURS), rtol=1e-5)
    np.testing.assert_allclose(corners(res.confidence), unidepth_confidence(COLOURS), atol=1e-5)
    row = res.depth[h // 4]  # the quadrant edge stays in place: padding cut at the right pixels
    np.testing.assert_allclose(row[[w // 2 - 4, w // 2 + 3]],
                               unidepth_depth(COLOURS[0]), rtol=1e-4)
    col = res.depth[:, w // 4]
    np.testing.assert_allclose(col[[h // 2 - 4, h // 2 + 3]],
                               unidepth_depth(COLOURS[:, 0]), rtol=1e-4)
    sx, sy, left, top = geometry(h, w)
    k = res.intrinsics
    assert k.source is IntrinsicsSource.PREDICTED and res.notes == []
    assert (k.fx, k.fy) == pytest.approx((400.0 / sx, 400.0 / sy), rel=1e-6)
    assert (k.cx, k.cy) == pytest.approx(((308.0 - left) / sx, (231.0 - top) / sy), rel=1e-6)


def test_implausible_predicted_focal_falls_back_with_a_note(tmp_path):
    root = export_to(tmp_path, focal_px=2.0)  # 2 px focal: a ~180 deg FOV
    res = load_backend(NAME, weights=root).infer_image(quadrants(480, 640))
    assert res.intrinsics.source is IntrinsicsSource.ASSUMED_FOV
    assert res.intrinsics.fx == pytest.approx(320.0 / math.tan(math.radians(30.0)))
    assert len(res.notes) == 1 and "implausible" in res.notes[0]
    assert res.intrinsics.note == res.notes[0]


@pytest.mark.parametrize(("h", "w"), SIZES)
def test_camera_input_gets_the_known_camera_in_network_pixels(with_camera, h, w):
    backend = load_backend(NAME, weights=with_camera)
    assert backend.takes_camera
    k = Intrinsics(700.0, 690.0, w / 2 + 3, h / 2 - 5, IntrinsicsSource.USER)
    res = backend.infer_image(quadrants(h, w), k)
    sx, _, _, _ = geometry(h, w)
    np.testing.assert_allclose(corners(res.depth), unidepth_depth(COLOURS, 700.0 * sx), rtol=1e-5)
    assert res.intrinsics == k and res.notes == []
    assumed = backend.infer_image(quadrants(h, w), None)
    f = 0.5 * w / math.tan(math.radians(30.0))
    np.testing.assert_allclose(corners(assumed.depth), unidepth_depth(COLOURS, f * sx), rtol=1e-5)
    assert assumed.intrinsics.source is IntrinsicsSource.ASSUMED_FOV
    assert any("assumed" in n for n in assumed.notes)


def test_known_camera_without_camera_input_is_reported_and_explained(plain):
    k = Intrinsics.from_focal(640, 480, 555.0, IntrinsicsSource.EXIF)
    res = load_backend(NAME, weights=plain).infer_image(quadrants(480, 640), k)
    assert res.intrinsics == k
    assert len(res.notes) == 1 and "no camera input" in res.notes[0]


def test_batch_matches_single_images(plain):
    backend = load_backend(NAME, weights=plain)
    images = [quadrants(*SIZES[0]), quadrants(*SIZES[1])[:, ::-1].copy(), quadrants(64, 48)]
    batch = backend.infer_batch(images)
    assert [r.depth.shape for r in batch] == [im.shape[:2] for im in images]
    for image, res in zip(images, batch, strict=True):
        single = backend.infer_image(image)
        np.testing.assert_allclose(res.depth, single.depth, rtol=1e-6)
        assert res.intrinsics == single.intrinsics


def test_network_input_is_normalised_and_zero_padded():
    h, w = 640, 480
    box = Letterbox.fit((h, w), CANVAS)
    assert box.left > 0 and box.top == 0
    x = _network_input(quadrants(h, w), box)
    assert x.shape == (3, *CANVAS) and x.dtype == np.float32
    assert np.all(x[:, :, : box.left] == 0) and np.all(x[:, :, box.left + box.new_hw[1] :] == 0)
    inside = x[:, 2, box.left + 2]  # top-left quadrant, away from any edge
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(inside, (COLOURS[0, 0] / 255.0 - mean) / std, atol=1e-5)


def test_missing_output_fails_with_one_sentence(tmp_path):
    export_tiny_unidepth(tmp_path / "model.onnx", shape=CANVAS, rename={"out_K": "K_pred"})
    with pytest.raises(DepthwebError) as err:
        load_backend(NAME, weights=tmp_path)
    msg = str(err.value)
    assert "output 'out_K'" in msg and "UniDepth" in msg
    assert msg.endswith(".") and ". " not in msg and "\n" not in msg


# --- the unidepth package adapter, against a stand-in of its documented interface ----------------
class FakeUniDepthV2:
    """Mimics ``unidepth.models.UniDepthV2``: ``from_pretrained``, ``to``, ``eval``, ``infer``."""

    instances: ClassVar[list[FakeUniDepthV2]] = []
    focal_factor: ClassVar[float] = 0.8

    def __init__(self, ref: str) -> None:
        self.ref, self.calls, self.device = ref, [], None

    @classmethod
    def from_pretrained(cls, ref: str) -> FakeUniDepthV2:
        cls.instances.append(cls(ref))
        return cls.instances[-1]

    def to(self, device):
        self.device = device
        return self

    def eval(self):
        return self

    def infer(self, rgb: torch.Tensor, camera: torch.Tensor | None = None) -> dict:
        self.calls.append((rgb, camera))
        _, h, w = rgb.shape
        f = float(camera[0, 0]) if camera is not None else self.focal_factor * w
        k = torch.tensor([[[f, 0.0, w / 2], [0.0, f, h / 2], [0.0, 0.0, 1.0]]])
        depth = (1.0 + rgb[0].float() / 255.0 * 4.0)[None, None]
        return {"depth": depth, "intrinsics": k, "confidence": torch.full((1, 1, h, w), 0.7),
                "points": torch.zeros(1, 3, h, w)}


@pytest.fixture
def fake_unidepth(monkeypatch):
    pkg, models = types.ModuleType("unidepth"), types.ModuleType("unidepth.models")
    models.UniDepthV2 = FakeUniDepthV2
    pkg.models = models
    monkeypatch.setitem(sys.modules, "unidepth", pkg)
    monkeypatch.setitem(sys.modules, "unidepth.models", models)
    FakeUniDepthV2.instances = []
    return FakeUniDepthV2


def package_weights(ref: str = "lpiccinelli/unidepth-v2-vits14") -> ResolvedWeights:
    return ResolvedWeights(Path(f"package:{ref}"), f"package:{ref}")


def test_package_adapter_passes_known_camera_and_reads_outputs(fake_unidepth):
    backend = UniDepthBackend.load(get_spec(NAME), package_weights(), "cpu")
    assert isinstance(backend, UniDepthPackageBackend)
    model = fake_unidepth.instances[-1]
    assert model.ref == "lpiccinelli/unidepth-v2-vits14" and model.device == "cpu"
    image = quadrants(120, 160)
    k = Intrinsics(150.0, 140.0, 81.0, 59.0, IntrinsicsSource.USER)
    res = backend.infer_image(image, k)
    rgb, camera = model.calls[-1]
    assert tuple(rgb.shape) == (3, 120, 160) and rgb.dtype == torch.uint8
    np.testing.assert_allclose(camera.numpy(), k.matrix(), rtol=1e-6)
    np.testing.assert_allclose(res.depth, 1.0 + image[..., 0] / 255.0 * 4.0, rtol=1e-6)
    np.testing.assert_allclose(res.confidence, 0.7, rtol=1e-6)
    assert res.intrinsics == k and res.weights == "package:lpiccinelli/unidepth-v2-vits14"


def test_package_adapter_predicts_camera_when_only_assumed(fake_unidepth):
    backend = UniDepthBackend.load(get_spec(NAME), package_weights(), "cpu")
    assumed = Intrinsics.from_fov(160, 120, 60.0)
    res = backend.infer_image(quadrants(120, 160), assumed)
    assert fake_unidepth.instances[-1].calls[-1][1] is None  # an assumed FOV is not imposed
    assert res.intrinsics.source is IntrinsicsSource.PREDICTED
    assert res.intrinsics.fx == pytest.approx(0.8 * 160)
    fake_unidepth.focal_factor = 0.01  # implausible -> assumed FOV with a note
    try:
        bad = backend.infer_image(quadrants(120, 160))
    finally:
        fake_unidepth.focal_factor = 0.8
    assert bad.intrinsics.source is IntrinsicsSource.ASSUMED_FOV and "implausible" in bad.notes[0]


def test_package_runtime_selected_by_spec_option(fake_unidepth, tmp_path):
    spec = get_spec(NAME)
    spec = dataclasses.replace(spec, options={**spec.options, "runtime": "package"})
    backend = UniDepthBackend.load(spec, ResolvedWeights(tmp_path, str(tmp_path)), "cpu")
    assert isinstance(backend, UniDepthPackageBackend)
    assert fake_unidepth.instances[-1].ref == spec.options["package_id"]


def test_package_missing_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "unidepth", None)
    monkeypatch.setitem(sys.modules, "unidepth.models", None)
    with pytest.raises(ModelUnavailableError, match="pip install"):
        UniDepthBackend.load(get_spec(NAME), package_weights(), "cpu")


# --- the current official export: rgbs [+ rays] -> pts_3d, confidence, intrinsics ---------------
CURRENT = (462, 630)


def current_geometry(h: int, w: int):
    s = min(CURRENT[0] / h, CURRENT[1] / w)
    nh, nw = int(h * s), int(w * s)
    return nw / w, nh / h, (CURRENT[1] - nw) // 2, (CURRENT[0] - nh) // 2


@pytest.fixture(scope="module")
def current(tmp_path_factory):
    root = tmp_path_factory.mktemp("unidepth-current")
    export_tiny_unidepth(root / "unidepthv2.onnx", focal_px=400.0, export="current")
    return root


@pytest.fixture(scope="module")
def current_rays(tmp_path_factory):
    root = tmp_path_factory.mktemp("unidepth-current-rays")
    export_tiny_unidepth(root / "unidepthv2.onnx", with_camera=True, export="current")
    return root


@pytest.mark.parametrize(("h", "w"), SIZES)
def test_current_export_depth_is_the_z_of_pts_3d_with_predicted_camera(current, h, w):
    backend = load_backend(NAME, weights=current)
    assert backend.canvas_hw == CURRENT and not backend.takes_camera
    res = backend.infer_image(quadrants(h, w))
    assert res.depth.shape == (h, w) and res.kind is DepthKind.METRIC_DEPTH
    np.testing.assert_allclose(corners(res.depth), unidepth_depth(COLOURS), rtol=1e-5)
    np.testing.assert_allclose(corners(res.confidence), unidepth_confidence(COLOURS), atol=1e-5)
    sx, sy, left, top = current_geometry(h, w)
    k = res.intrinsics
    assert k.source is IntrinsicsSource.PREDICTED and res.notes == []
    assert (k.fx, k.fy) == pytest.approx((400.0 / sx, 400.0 / sy), rel=1e-6)
    assert (k.cx, k.cy) == pytest.approx(((315.0 - left) / sx, (231.0 - top) / sy), rel=1e-6)


@pytest.mark.parametrize(("h", "w"), SIZES)
def test_current_export_with_rays_gets_the_known_camera_as_rays(current_rays, h, w):
    backend = load_backend(NAME, weights=current_rays)
    assert backend.takes_camera
    k = Intrinsics(700.0, 690.0, w / 2 + 3, h / 2 - 5, IntrinsicsSource.USER)
    res = backend.infer_image(quadrants(h, w), k)
    sx, _, _, _ = current_geometry(h, w)
    # the tiny graph reads the focal back from the rays: 1 / (x/z step between two columns)
    np.testing.assert_allclose(corners(res.depth), unidepth_depth(COLOURS, 700.0 * sx), rtol=1e-3)
    assert res.intrinsics == k and res.notes == []


def test_unit_rays_go_through_pixel_centres():
    from depthweb.models.unidepth import unit_rays

    k = np.array([[50.0, 0, 7.0], [0, 40.0, 3.0], [0, 0, 1]])
    rays = unit_rays(k, (6, 10))
    assert rays.shape == (3, 6, 10) and rays.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(rays, axis=0), 1.0, rtol=1e-6)
    v, u = 4, 9
    direction = np.array([(u + 0.5 - 7.0) / 50.0, (v + 0.5 - 3.0) / 40.0, 1.0])
    np.testing.assert_allclose(rays[:, v, u], direction / np.linalg.norm(direction), rtol=1e-6)


def test_current_export_missing_output_fails_with_one_sentence(tmp_path):
    export_tiny_unidepth(tmp_path / "model.onnx", export="current", rename={"pts_3d": "points"})
    with pytest.raises(DepthwebError) as err:
        load_backend(NAME, weights=tmp_path)
    msg = str(err.value)
    assert "output 'pts_3d'" in msg and "current export" in msg
    assert msg.endswith(".") and "\n" not in msg


def test_depthweb_predict_runs_the_current_export(current, tmp_path):
    """`depthweb predict` on a generated photo: metric depth, predicted camera, confidence."""
    import json
    import os
    import subprocess

    import cv2

    photo = tmp_path / "quadrants.png"
    cv2.imwrite(str(photo), quadrants(240, 320)[..., ::-1])
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "depthweb", "predict", str(photo), "-m", NAME,
                           "--weights", str(current), "-o", str(out)],
                          capture_output=True, text=True, timeout=300, env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr
    meta = json.loads((out / "quadrants.json").read_text())
    assert meta["kind"] == "metric_depth" and meta["intrinsics"]["source"] == "predicted"
    assert meta["has_confidence"] is True
    sx, _, _, _ = current_geometry(240, 320)
    assert meta["intrinsics"]["fx"] == pytest.approx(400.0 / sx, rel=1e-5)
    depth = np.load(out / "quadrants.npy")
    np.testing.assert_allclose(corners(depth), unidepth_depth(COLOURS), rtol=1e-5)
    confidence = np.load(out / "quadrants_confidence.npy")
    assert confidence.shape == (240, 320) and confidence.dtype == np.float32
    np.testing.assert_allclose(corners(confidence), unidepth_confidence(COLOURS), atol=1e-5)
