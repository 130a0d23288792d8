"""Classic stereo: calib parsing, Z = f*B/(d+doffs), invalid stays NaN, Middlebury accuracy."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from depthweb.errors import InputError
from depthweb.imaging import load_image
from depthweb.models.stereo import (
    SGBMParams,
    StereoCalib,
    compute_disparity,
    default_num_disparities,
    disparity_to_depth,
    left_right_check,
    stereo_depth,
)
from depthweb.pfm import read_pfm
from depthweb.types import DepthKind, IntrinsicsSource

ADIRONDACK_CALIB = """cam0=[1038.018 0 322.037; 0 1038.018 243.393; 0 0 1]
cam1=[1038.018 0 375.308; 0 1038.018 243.393; 0 0 1]
doffs=53.271
baseline=176.252
width=718
height=496
ndisp=73
isint=0
vmin=8
vmax=65
"""


# --- calibration -------------------------------------------------------------------------------


def test_from_middlebury_parses_values(tmp_path):
    path = tmp_path / "calib.txt"
    path.write_text(ADIRONDACK_CALIB)
    c = StereoCalib.from_middlebury(path)
    assert c.focal_px == pytest.approx(1038.018)
    assert c.baseline_m == pytest.approx(0.176252)  # mm -> m
    assert c.doffs_px == pytest.approx(53.271)
    assert (c.cx, c.cy) == pytest.approx((322.037, 243.393))
    assert (c.width, c.height, c.ndisp) == (718, 496, 73)
    assert (c.vmin, c.vmax) == (8.0, 65.0)
    intr = c.intrinsics(718, 496)
    assert intr.source is IntrinsicsSource.CALIB
    assert (intr.fx, intr.fy, intr.cx, intr.cy) == pytest.approx((1038.018, 1038.018, 322.037,
                                                                   243.393))


def test_doffs_from_cam1_when_missing(tmp_path):
    path = tmp_path / "calib.txt"
    path.write_text(ADIRONDACK_CALIB.replace("doffs=53.271\n", ""))
    assert StereoCalib.from_middlebury(path).doffs_px == pytest.approx(375.308 - 322.037)


@pytest.mark.parametrize(("text", "needle"), [
    ("", "no cam0= line"),
    ("baseline=176\n", "no cam0= line"),
    (ADIRONDACK_CALIB.replace("cam0=[1038.018 0 322.037; 0 1038.018 243.393; 0 0 1]",
                              "cam0=[1038.018 0 322.037; 0 1038.018 243.393]"), "3x3 matrix"),
    (ADIRONDACK_CALIB.replace("0 0 1]\ncam1", "0 0 x]\ncam1"), "3x3 matrix"),
    (ADIRONDACK_CALIB.replace("baseline=176.252\n", ""), "no baseline= line"),
    (ADIRONDACK_CALIB.replace("baseline=176.252", "baseline=abc"), "is not a number"),
    (ADIRONDACK_CALIB.replace("baseline=176.252", "baseline=-5"), "baseline must be positive"),
    (ADIRONDACK_CALIB.replace("doffs=53.271", "doffs=nan"), "not a finite number"),
    (ADIRONDACK_CALIB.replace("[1038.018 0 322", "[0 0 322"), "focal length must be positive"),
])
def test_malformed_calib_one_line_error(tmp_path, text, needle):
    path = tmp_path / "calib.txt"
    path.write_text(text)
    with pytest.raises(InputError) as err:
        StereoCalib.from_middlebury(path)
    msg = str(err.value).replace("must be a positive number", "must be positive")
    assert msg.startswith("calib.txt") and needle in msg and "\n" not in msg


def test_missing_calib_file(tmp_path):
    with pytest.raises(InputError, match=r"^nope\.txt cannot be read"):
        StereoCalib.from_middlebury(tmp_path / "nope.txt")


def test_from_values_validates():
    c = StereoCalib.from_values(700.0, 0.12, 3.0)
    assert (c.focal_px, c.baseline_m, c.doffs_px) == (700.0, 0.12, 3.0)
    with pytest.raises(InputError, match="baseline"):
        StereoCalib.from_values(700.0, 0.0)
    with pytest.raises(InputError, match="focal length"):
        StereoCalib.from_values(float("inf"), 0.1)


# --- depth formula and invalid pixels ----------------------------------------------------------


def test_depth_formula_on_synthetic_disparity():
    calib = StereoCalib.from_values(1000.0, 0.2, doffs=10.0)
    disp = np.array([[0.0, 10.0, 90.0], [np.nan, -10.0, -25.0]], np.float32)
    z = disparity_to_depth(disp, calib)
    assert z.dtype == np.float32 and z.shape == disp.shape
    np.testing.assert_allclose(z[0], [1000 * 0.2 / 10, 1000 * 0.2 / 20, 1000 * 0.2 / 100],
                               rtol=1e-6)
    assert np.isnan(z[1]).all()  # NaN stays NaN; d + doffs <= 0 is invalid, not inf/negative


def test_left_right_check_rejects_disagreement():
    dl = np.array([[np.nan, np.nan, 2.0, 2.0, 1.0, 0.0]], np.float32)
    dr = np.array([[2.0, 5.0, 0.0, 0.0, 0.0, 0.0]], np.float32)
    ok = left_right_check(dl, dr, 1.0)
    # x=2 -> xr=0 agrees (2 vs 2); x=3 -> xr=1 disagrees (2 vs 5); x=4 -> xr=3 within 1 px
    assert ok.tolist() == [[False, False, True, False, True, True]]


def _textured_pair(shift: int, h: int = 96, w: int = 160):
    """A random-texture left view and the right view it implies at constant disparity ``shift``."""
    rng = np.random.default_rng(3)
    base = rng.integers(0, 256, (h, w + shift, 3), dtype=np.uint8)
    left = np.ascontiguousarray(base[:, :w])
    right = np.ascontiguousarray(base[:, shift : shift + w])  # right(x) = left(x + shift)
    return left, right


def test_constant_shift_recovered_and_out_of_view_is_nan():
    shift = 9
    left, right = _textured_pair(shift)
    disp = compute_disparity(left, right, num_disparities=32)
    assert disp.dtype == np.float32 and disp.shape == left.shape[:2]
    interior = disp[8:-8, shift + 8 : -8]
    assert np.isfinite(interior).mean() > 0.9
    assert np.nanmedian(interior) == pytest.approx(shift, abs=0.25)
    # Left columns x < shift have no match in the right image: never invented.
    assert np.isnan(disp[:, : shift - 1]).all()


def test_stereo_depth_result_and_nan_stays_nan():
    left, right = _textured_pair(6)
    calib = StereoCalib.from_values(500.0, 0.1, doffs=2.0)
    out = stereo_depth(left, right, calib, num_disparities=16)
    r = out.depth
    assert r.kind is DepthKind.METRIC_DEPTH and r.model == "stereo-sgbm"
    assert r.intrinsics.source is IntrinsicsSource.CALIB
    assert (r.intrinsics.fx, r.intrinsics.cx, r.intrinsics.cy) == (500.0, 80.0, 48.0)
    assert set(r.timings_ms) == {"disparity", "depth", "rectified_check"}
    np.testing.assert_array_equal(np.isnan(out.disparity), np.isnan(r.depth))
    np.testing.assert_allclose(r.depth[r.valid_mask], 50.0 / (out.disparity[r.valid_mask] + 2),
                               rtol=1e-5)
    assert 0 < np.isnan(r.depth).sum() < r.depth.size


def test_size_mismatch_names_both_sizes():
    left, right = _textured_pair(4)
    with pytest.raises(InputError) as err:
        stereo_depth(left, right[:, :-10], StereoCalib.from_values(500.0, 0.1))
    msg = str(err.value)
    assert "160x96" in msg and "150x96" in msg and "\n" not in msg


def test_calib_resolution_mismatch(tmp_path):
    path = tmp_path / "calib.txt"
    path.write_text(ADIRONDACK_CALIB)
    left, right = _textured_pair(4)
    with pytest.raises(InputError, match=r"describes 718x496 images but the pair is 160x96"):
        stereo_depth(left, right, StereoCalib.from_middlebury(path))


def test_num_disparities_default_and_validation():
    assert default_num_disparities(718) == 192
    assert default_num_disparities(718, StereoCalib(1.0, 1.0, ndisp=73)) == 80
    left, right = _textured_pair(4)
    with pytest.raises(ValueError, match="multiple of 16"):
        compute_disparity(left, right, num_disparities=20)
    with pytest.raises(ValueError, match="mode"):
        compute_disparity(left, right, params=SGBMParams(mode="nope"))


# --- Middlebury 2014 (real data, ground truth) -------------------------------------------------


@pytest.mark.parametrize("scene", ["Adirondack", "Motorcycle"])
def test_middlebury_depth_accuracy(shared_data, scene):
    folder = shared_data / "middlebury" / scene
    calib = StereoCalib.from_middlebury(folder / "calib.txt")
    left, right = load_image(folder / "im0.png"), load_image(folder / "im1.png")
    out = stereo_depth(left, right, calib)  # default parameters, the same for every scene

    gt_disp = read_pfm(folder / "disp0GT.pfm")
    gt = disparity_to_depth(np.where(np.isfinite(gt_disp), gt_disp, np.nan), calib)
    nocc = np.asarray(Image.open(folder / "mask0nocc.png")) == 255
    evaluable = nocc & np.isfinite(gt)
    pred = out.depth.depth
    ok = evaluable & np.isfinite(pred)
    abs_rel = float(np.mean(np.abs(pred[ok] - gt[ok]) / gt[ok]))
    valid = ok.sum() / evaluable.sum()
    print(f"{scene}: AbsRel {abs_rel:.4f}, valid {valid:.1%} of non-occluded GT pixels")
    assert evaluable.sum() > 0.5 * nocc.size
    assert valid >= 0.80
    assert abs_rel <= 0.03
