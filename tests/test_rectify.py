"""Rectification without real data: calibration files, a synthetic rig, unrectifiable pairs,
the stereo cost cap (issue 13 and issue 10 item 3)."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest

from depthweb.config import Settings
from depthweb.errors import InputError
from depthweb.imaging import load_image
from depthweb.models import stereo, stereo_rectified
from depthweb.models.rectify import rectify_calibrated, rectify_uncalibrated
from depthweb.models.rigcalib import RigCalib, load_rig
from depthweb.models.stereo import StereoCalib, stereo_depth
from depthweb.services import stereo_service
from depthweb.training.scenes import indoor_scene
from depthweb.training.stereo_pair import _SharedExposure, render_stereo_pair
from depthweb.training.synthetic import render
from depthweb.types import Intrinsics

K = np.array([[700.0, 0, 320], [0, 700.0, 240], [0, 0, 1]])
R_REL = cv2.Rodrigues(np.deg2rad([0.5, 2.0, 1.0]))[0]
T_REL = np.array([-0.12, 0.004, 0.006])


def write_yaml(path, **values) -> None:
    fs = cv2.FileStorage(str(path), cv2.FILE_STORAGE_WRITE)
    for key, value in values.items():
        if isinstance(value, (int, float)):
            fs.write(key, value)
        else:
            fs.write(key, np.asarray(value, np.float64))
    fs.release()


RIG = dict(K1=K, D1=np.zeros((1, 5)), K2=K, D2=np.zeros((1, 5)), R=R_REL, T=T_REL.reshape(3, 1))

KITTI = """calib_time: 09-Jan-2012 13:57:47
corner_dist: 9.950000e-02
S_00: 1.392000e+03 5.120000e+02
K_00: 9.842439e+02 0.000000e+00 6.900000e+02 0.000000e+00 9.808141e+02 2.331966e+02 0 0 1
D_00: -3.728755e-01 2.037299e-01 2.219027e-03 1.383707e-03 -7.233722e-02
R_00: 1 0 0 0 1 0 0 0 1
T_00: 0 0 0
S_02: 1.392000e+03 5.120000e+02
K_02: 9.597910e+02 0.000000e+00 6.960217e+02 0.000000e+00 9.569251e+02 2.241806e+02 0 0 1
D_02: -3.691481e-01 1.968681e-01 1.353473e-03 5.677587e-04 -6.770705e-02
R_02: 9.999758e-01 -5.267463e-03 -4.552439e-03 5.251945e-03 9.999804e-01 -3.413835e-03 \
4.570332e-03 3.389843e-03 9.999838e-01
T_02: 5.956621e-02 2.900141e-04 2.577209e-03
S_03: 1.392000e+03 5.120000e+02
K_03: 9.037596e+02 0.000000e+00 6.957519e+02 0.000000e+00 9.019653e+02 2.242509e+02 0 0 1
D_03: -3.639558e-01 1.788651e-01 6.029694e-04 -3.922424e-04 -5.382460e-02
R_03: 9.995599e-01 1.699522e-02 -2.431313e-02 -1.704422e-02 9.998531e-01 -1.809756e-03 \
2.427880e-02 2.223358e-03 9.997028e-01
T_03: -4.731050e-01 5.551470e-03 -5.250882e-03
"""


# --- calibration files -------------------------------------------------------------------------


def test_opencv_yaml_round_trip(tmp_path):
    path = tmp_path / "rig.yaml"
    write_yaml(path, **RIG, width=640, height=480)
    rig = load_rig(path)
    np.testing.assert_allclose(rig.k1, K)
    np.testing.assert_allclose(rig.r, R_REL)
    np.testing.assert_allclose(rig.t, T_REL)
    assert rig.d1.shape == (5,) and (rig.width, rig.height) == (640, 480)
    assert rig.baseline_m == pytest.approx(np.linalg.norm(T_REL))


def test_yaml_with_plain_lists_and_no_distortion(tmp_path):
    path = tmp_path / "rig.yml"
    path.write_text("%YAML:1.0\n---\nK1: [700, 0, 320, 0, 700, 240, 0, 0, 1]\n"
                    "K2: [700, 0, 320, 0, 700, 240, 0, 0, 1]\nR: [1, 0, 0, 0, 1, 0, 0, 0, 1]\n"
                    "T: [-0.1, 0, 0]\n")
    rig = load_rig(path)
    assert rig.d1.size == 0 and rig.t.tolist() == [-0.1, 0, 0] and rig.width is None


def test_kitti_cam_to_cam_uses_the_colour_pair(tmp_path):
    path = tmp_path / "calib_cam_to_cam.txt"
    path.write_text(KITTI)
    rig = load_rig(path)
    assert rig.k1[0, 0] == pytest.approx(959.791) and rig.k2[0, 0] == pytest.approx(903.7596)
    assert (rig.width, rig.height) == (1392, 512) and rig.d2.size == 5
    # The rig's pose maps camera-02 points to camera-03 points.
    r2 = np.array(KITTI.split("R_02: ")[1].split("\n")[0].split(), float).reshape(3, 3)
    t2 = np.array(KITTI.split("T_02: ")[1].split("\n")[0].split(), float)
    r3 = np.array(KITTI.split("R_03: ")[1].split("\n")[0].split(), float).reshape(3, 3)
    t3 = np.array(KITTI.split("T_03: ")[1].split("\n")[0].split(), float)
    x0 = np.array([1.0, -0.5, 8.0])
    np.testing.assert_allclose(rig.r @ (r2 @ x0 + t2) + rig.t, r3 @ x0 + t3, atol=1e-5)
    assert rig.baseline_m == pytest.approx(0.533, abs=0.005)


def test_service_recognises_each_format(tmp_path):
    yaml_path, kitti, middlebury = (tmp_path / "a.yaml", tmp_path / "b.txt", tmp_path / "c.txt")
    write_yaml(yaml_path, **RIG)
    kitti.write_text(KITTI)
    middlebury.write_text("cam0=[700 0 320; 0 700 240; 0 0 1]\nbaseline=100\n")
    for path, kind in ((yaml_path, RigCalib), (kitti, RigCalib), (middlebury, StereoCalib)):
        assert isinstance(stereo_service.calibration(path, None, None, 0), kind)
    free = stereo_service.calibration(None, None, 0.2, None, rectify=True)
    assert isinstance(free, stereo_service.Uncalibrated) and free.baseline_m == 0.2


def _bad_yaml(**changes) -> str:
    cam = "[700, 0, 320, 0, 700, 240, 0, 0, 1]"
    lines = {"K1": cam, "K2": cam,
             "D1": "[0, 0, 0, 0, 0]", "D2": "[0, 0, 0, 0, 0]", "R": "[1, 0, 0, 0, 1, 0, 0, 0, 1]",
             "T": "[-0.1, 0, 0]"}
    lines.update(changes)
    return "%YAML:1.0\n---\n" + "".join(f"{k}: {v}\n" for k, v in lines.items() if v is not None)


@pytest.mark.parametrize(("name", "text", "needle"), [
    ("rig.yaml", _bad_yaml(T=None), "has no T"),
    ("rig.yaml", _bad_yaml(R="[1, 0, 0, 0, 1, 0, 0, 0, 2]"), "not a rotation"),
    ("rig.yaml", _bad_yaml(K1="[0, 0, 320, 0, 700, 240, 0, 0, 1]"), "K1 is not a camera matrix"),
    ("rig.yaml", _bad_yaml(K2="[700, 0, 320]"), "K2 must hold 3x3 numbers"),
    ("rig.yaml", _bad_yaml(D2="[0.1, 0.2, 0.3]"), "D2 has 3 distortion values"),
    ("rig.yaml", _bad_yaml(T="[0, 0, 0]"), "T (the camera offset"),
    ("rig.yaml", _bad_yaml(T="[.nan, 0, 0]"), "not a finite number"),
    ("rig.yaml", "K1: [unclosed\n  - : :\n\t@@@", "not a readable OpenCV"),
    ("rig.yaml", "", "not a readable OpenCV"),
    ("calib_cam_to_cam.txt", KITTI.replace("K_03: ", "K_03: x "), "K_03 is missing or not"),
    ("calib_cam_to_cam.txt", KITTI.replace("9.999758e-01 -5.267463e-03", "2 -5.267463e-03"),
     "R_02 is not a rotation"),
])
def test_bad_calibration_files_get_one_sentence(tmp_path, name, text, needle):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(InputError) as err:
        stereo_service.calibration(path, None, None, 0)
    msg = str(err.value)
    assert needle in msg and name in msg and "\n" not in msg and msg.endswith(".")


def test_binary_yaml_is_refused(tmp_path):
    path = tmp_path / "rig.yaml"
    path.write_bytes(bytes(range(256)) * 8)
    with pytest.raises(InputError, match=r"^rig\.yaml is not a calibration file"):
        load_rig(path)


def test_calibration_size_must_match(tmp_path):
    path = tmp_path / "rig.yaml"
    write_yaml(path, **RIG, width=640, height=480)
    img = np.zeros((96, 128, 3), np.uint8)
    with pytest.raises(InputError, match="describes 640x480 images but the pair is 128x96"):
        rectify_calibrated(img, img, load_rig(path))


# --- calibrated path on a synthetic rig --------------------------------------------------------

SEED, H, W, BASELINE = 3, 288, 384, 0.12
DELTA = cv2.Rodrigues(np.deg2rad([1.0, -2.0, 1.5]))[0]
"""Right camera's rotation relative to the left, in the left camera's frame."""
OFFSET = np.array([BASELINE, 0.006, 0.004])
"""Right camera's centre in the left camera's frame, metres."""


def render_rig():
    """The seed-3 room from a left camera and a rotated, offset right camera; the rig's
    calibration in OpenCV's convention (X_right = R X_left + T)."""
    scene = indoor_scene(np.random.default_rng(SEED), H, W)
    cam = scene.camera
    right_cam = replace(cam, rot=cam.rot @ DELTA, origin=cam.origin + cam.rot @ OFFSET)
    left = render(scene, H, W, _SharedExposure(SEED + 1, SEED + 2))
    right = render(replace(scene, camera=right_cam), H, W, _SharedExposure(SEED + 1, SEED + 3))
    k = np.array([[cam.fx, 0, cam.cx - 0.5], [0, cam.fy, cam.cy - 0.5], [0, 0, 1]])
    r = DELTA.T
    t = -DELTA.T @ OFFSET
    return left, right, dict(K1=k, D1=np.zeros((1, 5)), K2=k, D2=np.zeros((1, 5)), R=r,
                             T=t.reshape(3, 1), width=W, height=H)


def abs_rel(depth: np.ndarray, gt: np.ndarray) -> tuple[float, float]:
    ok = np.isfinite(depth) & np.isfinite(gt) & (gt > 0) & (depth > 0)
    return float(np.mean(np.abs(depth[ok] - gt[ok]) / gt[ok])), float(ok.mean())


def test_calibrated_rig_gives_metric_depth_close_to_the_rectified_reference(tmp_path):
    left, right, values = render_rig()
    path = tmp_path / "rig.yaml"
    write_yaml(path, **values)
    settings = Settings()
    calib = stereo_service.calibration(path, None, None, 0)
    pair = [load_image_array(a, tmp_path / f"{n}.png") for a, n in ((left.rgb, "l"),
                                                                    (right.rgb, "r"))]
    computed = stereo_service.compute_stereo(*pair, calib, settings)
    result = computed.result.depth
    assert result.kind == "metric_depth" and result.intrinsics.source == "calib"
    assert computed.rectification["method"] == "calibrated"
    assert computed.rectification["epipolar_error_before_px"] > 2.0
    assert computed.rectification["epipolar_error_after_px"] < 0.5
    assert computed.pair_picture.shape == (H, 2 * W, 3)
    got, valid = abs_rel(result.depth, left.depth)

    reference = render_stereo_pair(SEED, H, W, BASELINE)  # rectified by construction
    ref_calib = StereoCalib.from_middlebury(write_text(tmp_path / "calib.txt",
                                                       reference.calib_txt()))
    ref = stereo_depth(reference.left.rgb, reference.right.rgb, ref_calib)
    ref_abs_rel, ref_valid = abs_rel(ref.depth.depth, reference.left.depth)
    print(f"AbsRel: rig {got:.4f} ({valid:.1%} valid), rectified reference {ref_abs_rel:.4f} "
          f"({ref_valid:.1%} valid)")
    assert got <= 1.5 * ref_abs_rel
    assert valid >= 0.7 * ref_valid


def write_text(path, text):
    path.write_text(text)
    return path


def load_image_array(rgb: np.ndarray, path):
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return load_image(path)


# --- unrectifiable pairs -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def example():
    pair = render_stereo_pair(SEED, H, W, BASELINE)
    return pair.left.rgb, pair.right.rgb


def _one_sentence(err, needle):
    msg = str(err.value)
    assert needle in msg and "\n" not in msg and msg.endswith("."), msg


def test_no_overlap_is_refused(example):
    noise = np.random.default_rng(0).integers(0, 256, example[0].shape, dtype=np.uint8)
    with pytest.raises(InputError) as err:
        rectify_uncalibrated(example[0], noise, None)
    _one_sentence(err, "do not overlap enough")


def test_identical_views_are_refused(example):
    with pytest.raises(InputError) as err:
        rectify_uncalibrated(example[0], example[0].copy(), 300.0)
    _one_sentence(err, "barely moved")


def test_rotation_only_is_refused(example):
    k = np.array([[250.0, 0, W / 2], [0, 250.0, H / 2], [0, 0, 1]])
    turned = k @ cv2.Rodrigues(np.deg2rad([0.0, 4.0, 0.0]))[0] @ np.linalg.inv(k)
    view = cv2.warpPerspective(example[0], turned, (W, H))
    with pytest.raises(InputError) as err:
        rectify_uncalibrated(example[0], view, None)
    _one_sentence(err, "only turned")


def test_forward_motion_is_refused():
    scene = indoor_scene(np.random.default_rng(SEED), H, W)
    cam = scene.camera
    ahead = replace(cam, origin=cam.origin + cam.rot @ np.array([0.0, 0.0, 0.3]))
    left = render(scene, H, W, _SharedExposure(1, 2)).rgb
    right = render(replace(scene, camera=ahead), H, W, _SharedExposure(1, 3)).rgb
    with pytest.raises(InputError) as err:
        rectify_uncalibrated(left, right, None)
    _one_sentence(err, "along its viewing direction")


def test_mismatched_sizes_are_refused(example):
    with pytest.raises(InputError) as err:
        rectify_uncalibrated(example[0], example[1][:, :-8], None)
    _one_sentence(err, "same size")


# --- the stereo cost cap (issue 10 item 3) -----------------------------------------------------


def _no_matching(*_args, **_kwargs):
    raise AssertionError("matching started although the request is over the cost cap")


def test_cost_cap_refuses_before_matching_on_a_rectified_pair(example, monkeypatch):
    monkeypatch.setattr(stereo, "compute_disparity", _no_matching)
    calib = StereoCalib.from_values(250.0, 0.12)
    cost = H * W * 96
    with pytest.raises(InputError) as err:
        stereo_depth(*example, calib, num_disparities=96, max_cost=cost - 1)
    _one_sentence(err, "over this server's limit")
    assert "96 disparities" in str(err.value)


def test_cost_cap_applies_after_rectification(example, monkeypatch):
    rect = rectify_uncalibrated(example[0], example[1], 250.0)
    low, num = stereo_rectified.search_range(rect)
    lo, hi = rect.disparity_range
    assert low <= lo and low + num >= hi and num % 16 == 0
    monkeypatch.setattr(stereo_rectified, "compute_disparity", _no_matching)
    with pytest.raises(InputError) as err:
        stereo_rectified.stereo_unrectified(example[0], example[1], rect,
                                            Intrinsics.from_fov(W, H, 60.0),
                                            max_cost=H * W * num - 1)
    _one_sentence(err, f"needs {num} disparities")


def test_cost_cap_setting_reaches_the_service(example, tmp_path, monkeypatch):
    monkeypatch.setenv("DEPTHWEB_STEREO_MAX_COST", "1000")
    settings = Settings()
    assert settings.stereo_max_cost == 1000
    paths = [tmp_path / "l.png", tmp_path / "r.png"]
    for p, a in zip(paths, example, strict=True):
        cv2.imwrite(str(p), cv2.cvtColor(a, cv2.COLOR_RGB2BGR))
    out = tmp_path / "out"
    out.mkdir()
    calib = stereo_service.calibration(None, 250.0, 0.12, 0.0)
    with pytest.raises(InputError, match="over this server's limit of 1e\\+03"):
        stereo_service.run_stereo(*paths, calib, settings, out, predict_fn=None)
    assert list(out.iterdir()) == []  # nothing written
    free = stereo_service.calibration(None, None, None, None, rectify=True)
    with pytest.raises(InputError, match="over this server's limit"):
        stereo_service.run_stereo(*paths, free, settings, out, predict_fn=None)
    assert list(out.iterdir()) == []
