"""The Studio's use cases without a server: synthetic scenes with known answers."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from depthweb.config import Settings
from depthweb.errors import InputError
from depthweb.services import compare, stereo_service, studio, visuals
from depthweb.services.workspace import Workspace
from depthweb.types import DepthKind, DepthResult, Intrinsics

H, W = 48, 64
K = Intrinsics.from_focal(W, H, 50.0, "user")


def ramp_depth(seed: int = 0) -> np.ndarray:
    """A smooth metric depth map (H, W) between about 1 and 3 m."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W]
    return (1.5 + xx / W + 0.5 * yy / H + 0.01 * rng.random((H, W))).astype(np.float32)


def result(values: np.ndarray, kind: DepthKind, model: str = "m") -> DepthResult:
    return DepthResult(values.astype(np.float32), kind, K, model, timings_ms={"forward": 1.0})


def photo(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (H, W, 3), dtype=np.uint8)


def test_relative_disparity_becomes_shape_only_depth_with_a_label():
    depth = ramp_depth()  # 1.5 to 3 m: far/near within the rule's ratio, so shift 0
    shape = visuals.shape_depth(result(3.0 / depth, DepthKind.RELATIVE_DISPARITY))
    assert shape.unit == "relative" and shape.note == visuals.SHAPE_ONLY
    assert "shifted by +0" in shape.rule
    expected = depth / np.median(depth)  # zero shift: depth up to scale, median 1
    far = np.isclose(shape.depth, shape.depth.max())  # the far band sits on one plane
    np.testing.assert_allclose(shape.depth[~far], expected[~far], rtol=1e-5)
    assert far.mean() < 0.1


def test_negative_disparity_gives_a_complete_shape_and_holeless_normals():
    depth = ramp_depth()
    pred = 3.0 / depth - 1.6  # zero or negative on the far half, like the bundled student
    assert (pred <= 0).mean() > 0.3
    res = result(pred, DepthKind.RELATIVE_DISPARITY)
    shape = visuals.shape_depth(res)
    assert np.isfinite(shape.depth).all()
    assert "shifted by +" in shape.rule and "far plane" in shape.rule
    picture, note = visuals.normals_picture(res, shape)
    assert note == "Normals derived from the shape-only depth"
    assert (picture.max(axis=-1) > 0).all()  # no black hole over valid pixels


def test_metric_depth_stays_metric_but_far_and_flying_pixels_are_clamped():
    depth = ramp_depth()
    depth[5, 5], depth[6, 6] = 500.0, 1e-4
    shape = visuals.shape_depth(result(depth, DepthKind.METRIC_DEPTH))
    assert shape.unit == "m" and shape.note is None
    assert np.isfinite(shape.depth).all()  # clamped to the far plane / near limit, not holes
    assert shape.depth[5, 5] < 100 and shape.depth[6, 6] > 0.1
    keep = np.ones(depth.shape, bool)
    keep[5, 5] = keep[6, 6] = False
    np.testing.assert_array_equal(shape.depth[keep], depth[keep])


def test_readouts_name_what_the_number_is():
    depth = ramp_depth()
    rel = studio.StudioState(photo(), result(0.5 / depth - 0.3, DepthKind.RELATIVE_DISPARITY),
                             "x", points=[(3, 4)])
    text = studio.measure_text(rel)
    value = 0.5 / depth[4, 3] - 0.3
    assert f"relative inverse depth {value:.4g}" in text and " depth " not in text.replace(
        "inverse depth", "")
    metric = studio.StudioState(photo(), result(depth, DepthKind.METRIC_DEPTH), "x",
                                points=[(3, 4)])
    assert f"depth {depth[4, 3]:.4g} m" in studio.measure_text(metric)


def test_one_anchor_on_a_relative_model_says_what_it_fitted():
    depth = ramp_depth()
    st = studio.StudioState(photo(), result(2.0 / depth - 0.9, DepthKind.RELATIVE_DISPARITY),
                            "x")
    aligned = studio.align(st, [(20, 20, 2.5)])
    assert aligned.alignment["determined"] == "scale (shift from the shape rule)"
    assert aligned.alignment["residual"] == "not measurable with 1 anchor"
    assert aligned.current.depth[20, 20] == pytest.approx(2.5, rel=1e-5)
    finite = aligned.current.depth[np.isfinite(aligned.current.depth)]
    assert (finite > 0).all() and finite.max() / finite.min() < 40
    text = studio.info_markdown(studio.describe(aligned, aligned.shape(), {}))
    assert "scale (shift from the shape rule) fitted" in text


@pytest.mark.parametrize("kind", [DepthKind.METRIC_DEPTH, DepthKind.RELATIVE_DISPARITY])
def test_the_depth_picture_puts_near_at_the_warm_end_either_way(kind):
    depth = ramp_depth()
    values = depth if kind is DepthKind.METRIC_DEPTH else 1.0 / depth
    for inverse in (False, True):
        rgb = visuals.depth_preview(result(values, kind), "gray", inverse).astype(int)
        near, far = np.unravel_index(depth.argmin(), depth.shape), np.unravel_index(
            depth.argmax(), depth.shape)
        assert rgb[near].sum() > rgb[far].sum() + 300  # gray: near white, far black


def test_measure_gives_the_3d_distance_between_two_points_on_a_plane():
    depth = np.full((H, W), 2.0, np.float32)
    st = studio.StudioState(photo(), result(depth, DepthKind.METRIC_DEPTH), "x")
    st.points = studio.add_point(studio.add_point([], 10, 20), 50, 20)
    text = studio.measure_text(st)
    expected = 2.0 * 40 / K.fx  # same depth and row: x distance z * du / fx
    assert f"{expected:.3f} m" in text and "depth 2 m" in text
    assert studio.add_point(st.points, 1, 1) == [(1, 1)]  # a third click starts over


def test_measure_refuses_metres_for_a_relative_model():
    st = studio.StudioState(photo(), result(1.0 / ramp_depth(), DepthKind.RELATIVE_DISPARITY),
                            "x", points=[(1, 1), (30, 20)])
    assert "needs metric depth" in studio.measure_text(st)


def test_anchors_recover_the_metric_depth_of_a_relative_disparity_prediction():
    depth = ramp_depth()
    scale, shift = 0.7, 0.1  # prediction = (1/depth - shift) / scale
    pred = (1.0 / depth - shift) / scale
    st = studio.StudioState(photo(), result(pred, DepthKind.RELATIVE_DISPARITY), "x")
    anchors = [(3, 4, float(depth[4, 3])), (60, 40, float(depth[40, 60])),
               (30, 25, float(depth[25, 30]))]
    aligned = studio.align(st, anchors)
    assert aligned.current.kind is DepthKind.METRIC_DEPTH
    np.testing.assert_allclose(aligned.current.depth, depth, rtol=1e-4)
    assert aligned.alignment["scale"] == pytest.approx(scale, rel=1e-4)
    assert aligned.alignment["space"] == "inverse depth"
    assert aligned.native is st.native and st.aligned is None  # the original is unchanged
    assert any("aligned to 3 metric anchor" in n for n in aligned.current.notes)


def test_parse_anchors_accepts_json_and_rejects_garbage():
    assert studio.parse_anchors("") == []
    assert studio.parse_anchors("[[1, 2, 3.5]]") == [(1.0, 2.0, 3.5)]
    with pytest.raises(InputError, match="Anchors must be JSON"):
        studio.parse_anchors("[[1, 2]]")


@pytest.mark.parametrize(("values", "message"), [
    ({"focal_px": -5}, "focal length in pixels must be a positive"),
    ({"fov_deg": 200}, "below 180 degrees"),
])
def test_camera_hints_are_checked(values, message):
    with pytest.raises(InputError, match=message):
        studio.camera_hint(**values)


def test_camera_hint_treats_zero_as_unknown():
    hint = studio.camera_hint(0, None, 0)
    assert (hint.focal_px, hint.focal_35mm, hint.fov_deg) == (None, None, None)


def test_agreement_is_zero_for_an_affine_copy_and_flags_a_wrong_region():
    depth = ramp_depth()
    reference = result(1.0 / depth, DepthKind.RELATIVE_DISPARITY, "ref")
    other_values = 2.0 / depth + 0.3  # same scene, another scale and shift
    other_values[:10, :10] *= 1.5  # a region the second model gets wrong
    other = result(other_values, DepthKind.RELATIVE_DISPARITY, "other")
    agree, summary = compare.agreement([reference, other], "ref")
    assert summary["space"] == "inverse depth" and summary["reference"] == "ref"
    row = summary["models"][1]
    assert row["scale"] == pytest.approx(0.5, rel=1e-3)
    assert row["shift"] == pytest.approx(-0.15, rel=1e-2)
    assert np.nanmax(agree[20:, 20:]) < 1e-4
    assert np.nanmin(agree[:10, :10]) > 0.2
    assert row["abs_rel"] == pytest.approx(np.nanmean(agree), rel=1e-6)


def test_agreement_with_a_metric_reference_is_measured_in_depth():
    depth = ramp_depth()
    reference = result(depth, DepthKind.METRIC_DEPTH, "metric")
    relative = result(4.0 / depth + 1.0, DepthKind.RELATIVE_DISPARITY, "rel")
    agree, summary = compare.agreement([reference, relative], "metric")
    assert summary["space"] == "depth"
    assert np.nanmax(agree) < 1e-4  # aligned in inverse depth, compared in depth


def test_compare_runs_each_model_once_and_writes_files(tmp_path):
    depth = ramp_depth()
    calls = []

    def fake_predict(images, model, camera=None, settings=None):
        calls.append(model)
        values = 1.0 / depth if model == "a" else depth * 2
        kind = DepthKind.RELATIVE_DISPARITY if model == "a" else DepthKind.RELATIVE_DEPTH
        return [result(values, kind, model)]

    image = tmp_path / "scene.png"
    Image.fromarray(photo()).save(image)
    settings = Settings(output_dir=tmp_path / "out")
    out = compare.compare_models(image, ["a", "b", "a"], "", settings, tmp_path,
                                 predict_fn=fake_predict, check_model=lambda name: None)
    assert calls == ["a", "b"] and out.reference == "a"
    names = sorted(f.name for f in out.files)
    assert names == ["scene_a.npy", "scene_agreement.npy", "scene_agreement.png",
                     "scene_b.npy", "scene_compare.json"]
    assert out.agreement.shape == (H, W) and len(out.previews) == 2


@pytest.mark.parametrize("models", [["a"], ["a", "b", "c", "d", "e"], []])
def test_compare_needs_two_to_four_models(models):
    with pytest.raises(InputError, match="Choose 2 to 4"):
        compare.checked_models(models, None)


def test_mono_fills_stereo_holes_after_alignment_in_its_own_space():
    depth = ramp_depth()
    stereo = depth.copy()
    stereo[10:20, 10:30] = np.nan  # holes
    stereo_result = result(stereo, DepthKind.METRIC_DEPTH, "stereo")
    mono = result(0.5 / depth - 0.2, DepthKind.RELATIVE_DISPARITY, "mono")
    aligned, fused, stats = stereo_service.fuse_mono(stereo_result, mono)
    np.testing.assert_allclose(fused.depth, depth, rtol=1e-4)  # holes filled correctly
    np.testing.assert_array_equal(fused.depth[~np.isnan(stereo)], stereo[~np.isnan(stereo)])
    assert stats["abs_rel_vs_stereo"] < 1e-4 and stats["holes_filled_fraction"] == 1.0
    assert aligned.kind is DepthKind.METRIC_DEPTH and stats["space"] == "inverse depth"


def test_stereo_probe_reports_values_at_a_pixel():
    depth, disp = ramp_depth(), np.full((H, W), 12.5, np.float32)
    out = stereo_service.StereoOutcome(photo(), result(depth, DepthKind.METRIC_DEPTH), disp,
                                       None, None, None, [], {})
    values = stereo_service.probe(out, 7.4, 3.6)
    assert values["pixel"] == [7, 4]
    assert values["stereo_depth_m"] == pytest.approx(float(depth[4, 7]))
    assert values["disparity_px"] == 12.5 and values["fused_depth_m"] is None
    with pytest.raises(InputError, match="outside"):
        stereo_service.probe(out, W + 3, 0)


def test_calibration_needs_a_file_or_focal_and_baseline(tmp_path):
    with pytest.raises(InputError, match=r"calib\.txt"):
        stereo_service.calibration(None, 700.0, None, 0.0)
    cal = stereo_service.calibration(None, 700.0, 0.12, 3.0)
    assert (cal.focal_px, cal.baseline_m, cal.doffs_px) == (700.0, 0.12, 3.0)


def test_workspace_deletes_only_its_own_old_folders(tmp_path):
    ws = Workspace(tmp_path, max_age_s=60)
    old, fresh = ws.new_request_dir(), ws.new_request_dir()
    keep = tmp_path / "someone-elses-folder"
    keep.mkdir()
    past = time.time() - 3600
    os.utime(old, (past, past))
    os.utime(keep, (past, past))
    assert ws.cleanup() == 1
    assert not old.exists() and fresh.exists() and keep.exists()
    assert ws.request_dirs() == [fresh]


def test_json_safe_turns_nan_and_numpy_into_plain_json():
    data = {"a": np.float32(1.5), "b": [float("nan"), np.int64(3)], "c": math.inf}
    assert studio.json_safe(data) == {"a": 1.5, "b": [None, 3], "c": None}


def test_markers_are_drawn_where_the_user_clicked():
    rgb = np.zeros((H, W, 3), np.uint8)
    out = visuals.mark_points(rgb, [(10, 10), (40, 30)], [(55, 5)])
    assert out[10, 10].any() and out[30, 40].any() and out[5, 55].any()
    assert not out[45, 2].any() and not rgb.any()  # elsewhere untouched, input not modified


def test_every_model_call_shares_one_gpu_queue(tmp_path):
    from depthweb.ui.app import build_studio, studio_mount_kwargs

    settings = Settings(output_dir=tmp_path / "out", model_dir=tmp_path / "models",
                        max_upload_mb=7)
    demo = build_studio(settings)
    by_name = {fn.name: fn for fn in demo.fns.values()}
    model_calls = ["on_predict", "api_predict", "on_compare", "api_compare", "on_run",
                   "api_stereo"]
    for name in model_calls:
        assert by_name[name].concurrency_id == "gpu", name
        assert by_name[name].concurrency_limit == 1, name
    assert {fn.api_name for fn in demo.fns.values() if fn.api_visibility == "public"} >= {
        "predict", "compare", "stereo"}
    kwargs = studio_mount_kwargs(settings)
    assert kwargs["max_file_size"] == "7mb" and str(tmp_path / "out") in kwargs["allowed_paths"]
    assert not Path(tmp_path / "out").exists()  # building writes nothing


def test_normals_come_from_the_model_when_it_predicts_them():
    depth = ramp_depth()
    normals = np.zeros((H, W, 3), np.float32)
    normals[..., 2] = -1.0  # every surface faces the camera
    res = result(depth, DepthKind.METRIC_DEPTH, "metric3d")
    res.normals = normals
    picture, note = visuals.normals_picture(res, visuals.shape_depth(res))
    assert note == "Normals predicted by metric3d" and picture.shape == (H, W, 3)
    assert len(np.unique(picture.reshape(-1, 3), axis=0)) == 1
    res.normals = None
    derived, note = visuals.normals_picture(res, visuals.shape_depth(res))
    assert note == "Normals derived from the metric depth" and derived.shape == (H, W, 3)
    assert len(np.unique(derived.reshape(-1, 3), axis=0)) > 1  # a slanted ramp, not a wall


def test_importing_the_app_builds_and_launches_nothing():
    import importlib
    import threading

    threads = {t.name for t in threading.enumerate()}
    app = importlib.import_module("app")  # serving here would block the test
    ui = importlib.import_module("depthweb.ui")
    server = importlib.import_module("depthweb.server")
    assert callable(app.serve) and callable(ui.build_studio) and callable(server.build_server)
    assert not hasattr(app, "demo") and not hasattr(app, "settings")
    assert {t.name for t in threading.enumerate()} <= threads  # no server thread


def test_anchors_that_would_give_negative_depths_are_refused_and_change_nothing():
    depth = ramp_depth()
    pred = 1.0 / depth  # the truth up to scale
    st = studio.StudioState(photo(), result(pred, DepthKind.RELATIVE_DISPARITY), "x")
    # anchors saying 1/depth = pred - 0.5: every pixel farther than 2 m is beyond infinity
    anchors = [(u, v, 1.0 / (float(pred[v, u]) - 0.5)) for u, v in ((0, 0), (5, 5))]
    with pytest.raises(InputError, match="negative or absurd depths"):
        studio.align(st, anchors)
    assert st.aligned is None and st.alignment is None
