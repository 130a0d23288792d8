import math

import numpy as np
import pytest

from depthweb.geometry.intrinsics import (
    checked_prediction,
    focal_px_from_35mm,
    is_plausible,
    resolve_intrinsics,
)
from depthweb.types import DepthKind, DepthResult, Intrinsics, IntrinsicsSource


def test_exif_35mm_formula_matches_design_note():
    # f_px = f_35mm * diag_px / 43.27 mm
    f = focal_px_from_35mm(26.0, 4032, 3024)
    assert f == pytest.approx(26.0 * 5040.0 / math.hypot(36, 24), rel=1e-9)


@pytest.mark.parametrize(
    ("kwargs", "source"),
    [
        ({"focal_px": 500.0, "exif_focal_35mm": 26.0}, "user"),
        ({"fov_deg": 90.0}, "user"),
        ({"exif_focal_35mm": 26.0}, "exif"),
        ({}, "assumed_fov"),
        ({"exif_focal_35mm": 0.5}, "assumed_fov"),  # implausible EXIF is ignored
    ],
)
def test_resolve_priority(kwargs, source):
    intr = resolve_intrinsics(640, 480, **kwargs)
    assert intr.source == source
    assert intr.fx > 0 and intr.cx == 320 and intr.cy == 240


def test_fov_roundtrip_and_assumed_note():
    intr = Intrinsics.from_fov(1000, 500, 60.0)
    assert intr.fov_x_deg(1000) == pytest.approx(60.0)
    assert "60.0 deg" in intr.note
    assert resolve_intrinsics(640, 480, fov_deg=90).fx == pytest.approx(320.0)


@pytest.mark.parametrize("bad", [0.0, -5.0, float("nan"), float("inf")])
def test_bad_user_focal_rejected(bad):
    with pytest.raises(ValueError, match="focal length"):
        resolve_intrinsics(640, 480, focal_px=bad)


@pytest.mark.parametrize(("fx", "plausible"), [(500.0, True), (5.0, False), (1e6, False)])
def test_predicted_fov_fallback(fx, plausible):
    pred = Intrinsics(fx, fx, 320, 240, IntrinsicsSource.PREDICTED)
    assert is_plausible(pred, 640, 480) is plausible
    out, note = checked_prediction(pred, 640, 480)
    if plausible:
        assert out == pred and note is None
    else:
        assert out.source == "assumed_fov" and "implausible" in note and out.fx > 0


def test_scaled_intrinsics():
    intr = Intrinsics(500, 400, 320, 240, IntrinsicsSource.CALIB).scaled(0.5, 0.25)
    assert (intr.fx, intr.fy, intr.cx, intr.cy) == (250, 100, 160, 60)


def test_depth_result_metadata_and_validity():
    depth = np.array([[1.0, np.nan], [0.0, 2.0]], np.float64)
    res = DepthResult(depth, "metric_depth", Intrinsics.from_fov(2, 2, 60), "m", "w")
    assert res.depth.dtype == np.float32 and res.kind is DepthKind.METRIC_DEPTH
    assert res.valid_fraction == pytest.approx(0.5)
    meta = res.metadata()
    assert meta["unit"] == "m" and meta["depth_range"] == {"min": 1.0, "max": 2.0}
    assert meta["intrinsics"]["source"] == "assumed_fov"
    disp = DepthResult(np.array([[-1.0, 0.0]]), "relative_disparity", res.intrinsics, "m")
    assert disp.valid_fraction == 1.0 and disp.unit == "relative"
    with pytest.raises(ValueError):
        DepthResult(np.zeros((2, 2, 1)), "metric_depth", res.intrinsics, "m")
