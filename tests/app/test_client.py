"""The named API endpoints (predict, compare, stereo) through gradio_client against a live app."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from gradio_client import handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from depthweb.pfm import read_pfm
from depthweb.services.export import decode_png16
from tests.app.studio_server import METRIC_MODEL, RELATIVE_MODEL

REPO = Path(__file__).resolve().parents[2]
PHOTO = REPO / "assets" / "examples" / "monodepth2_test_image.jpg"  # 638x235, CC BY 2.0


def predict(client, image: Path, model: str = RELATIVE_MODEL, **kwargs):
    return client.predict(image=handle_file(str(image)), model=model, api_name="/predict",
                          **kwargs)


def small_photo(tmp_path: Path, size=(96, 64), seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 255, (4, 6, 3), dtype=np.uint8)
    img = Image.fromarray(coarse).resize(size, Image.BILINEAR)
    path = tmp_path / f"small{seed}.png"
    img.save(path)
    return path


def test_the_three_endpoints_are_named_with_client_friendly_parameters(client):
    api = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    params = {name: [p["parameter_name"] for p in spec["parameters"]] for name, spec in
              api.items()}
    assert params["/predict"] == ["image", "model", "focal_px", "focal_35mm", "fov_deg",
                                  "anchors"]
    assert params["/compare"] == ["image", "models", "reference"]
    assert params["/stereo"] == ["left", "right", "calib", "focal_px", "baseline_m", "doffs",
                                 "mono_model", "rectify"]
    assert not [name for name in api if name.startswith(("/on_", "/load_example"))]  # UI only


def test_predict_returns_the_clis_raw_exports_and_a_mesh(client):
    npy, png16, sidecar, colour, glb, info = predict(client, PHOTO)
    depth = np.load(npy)
    w, h = Image.open(PHOTO).size
    assert depth.shape == (h, w) and depth.dtype == np.float32
    meta = json.loads(Path(sidecar).read_text())
    assert meta["kind"] == "relative_disparity" and meta["unit"] == "relative"
    assert meta["model"] == RELATIVE_MODEL and (meta["height"], meta["width"]) == (h, w)
    assert meta["intrinsics"]["source"] == "assumed_fov"
    back = decode_png16(Path(png16), meta)
    ok = np.isfinite(depth)
    assert np.array_equal(np.isfinite(back), ok)
    assert np.abs(back[ok] - depth[ok]).max() <= meta["png_scale"] * 0.51 + 1e-6
    assert Image.open(colour).size == (w, h)
    import trimesh

    mesh = trimesh.load(glb, force="mesh")
    assert len(mesh.vertices) > 1000 and len(mesh.faces) > 1000
    assert info["view_3d"].startswith("shape only, unknown scale")
    assert info["kind"] == "relative_disparity"
    assert {"decode", "forward", "first_picture", "files"} <= set(info["timings_ms"])
    assert "far plane" in info["shape_rule"]


def test_predict_uses_the_focal_length_it_is_given(client, tmp_path):
    photo = small_photo(tmp_path)
    *_, info = predict(client, photo, focal_px=123.5)
    assert info["intrinsics"]["source"] == "user"
    assert info["intrinsics"]["fx"] == pytest.approx(123.5)
    *_, info = predict(client, photo, fov_deg=90)
    assert info["intrinsics"]["fx"] == pytest.approx(96 / 2)  # tan(45 deg) = 1


def test_anchors_turn_a_relative_prediction_metric(client):
    photo = PHOTO
    native = np.load(predict(client, photo)[0])
    order = np.argsort(native, axis=None)
    pixels = [np.unravel_index(order[i], native.shape) for i in (10, -10)]  # (row, col)
    assert native[pixels[0]] < 0.9 * native[pixels[1]]
    scale = 0.8  # the truth: 1/depth = scale * prediction + shift, positive everywhere
    shift = 0.05 - scale * float(np.nanmin(native))
    anchors = [[int(c), int(r), float(1.0 / (scale * native[r, c] + shift))] for r, c in pixels]
    npy, _, sidecar, _, _, info = predict(client, photo, anchors=json.dumps(anchors))
    aligned = np.load(npy)
    assert info["kind"] == "metric_depth" and info["native_kind"] == "relative_disparity"
    assert info["alignment"]["scale"] == pytest.approx(scale, rel=1e-4)
    assert info["alignment"]["shift"] == pytest.approx(shift, abs=1e-4)
    assert info["alignment"]["residual_m"] is None
    assert info["alignment"]["residual"] == "not measurable with 2 anchors"
    assert info["alignment"]["determined"] == "scale and shift"
    assert info["view_3d"] == "metric (metres)"
    expected = 1.0 / (scale * native.astype(np.float64) + shift)
    np.testing.assert_allclose(aligned, expected, rtol=1e-4)
    assert json.loads(Path(sidecar).read_text())["alignment"]["anchors"] == 2


def test_a_metric_model_gives_metres(client, tmp_path):
    npy, *_, info = predict(client, small_photo(tmp_path, seed=1), model=METRIC_MODEL)
    depth = np.load(npy)
    assert info["kind"] == "metric_depth" and info["unit"] == "m"
    assert info["view_3d"] == "metric (metres)"
    assert np.nanmin(depth) > 0 and np.nanmax(depth) < 20.0  # the indoor head's max_depth


def test_compare_aligns_every_model_to_the_reference(client):
    agree_npy, agree_png, summary, npys = client.predict(
        image=handle_file(str(PHOTO)), models=[RELATIVE_MODEL, METRIC_MODEL], reference="",
        api_name="/compare")
    w, h = Image.open(PHOTO).size
    agreement = np.load(agree_npy)
    assert agreement.shape == (h, w)
    assert Image.open(agree_png).size == (w, h)
    assert summary["reference"] == RELATIVE_MODEL and summary["space"] == "inverse depth"
    rows = {r["model"]: r for r in summary["models"]}
    other = rows[METRIC_MODEL]
    assert other["scale"] != 0 and 0 <= other["delta1"] <= 1
    # With two models the agreement map is the other model's relative difference.
    assert np.nanmean(agreement) == pytest.approx(other["abs_rel"], rel=1e-4)
    assert sorted(Path(p).name for p in npys) == sorted(
        f"monodepth2_test_image_{m}.npy" for m in (RELATIVE_MODEL, METRIC_MODEL))


ADIRONDACK = (1038.018, 0.176252, 53.271)  # f (px), baseline (m), doffs (px) from calib.txt


def adirondack_truth(scene: Path) -> tuple[np.ndarray, np.ndarray]:
    """Ground-truth depth (m, NaN unknown) and the non-occluded mask of the left view."""
    f, baseline, doffs = ADIRONDACK
    gt = f * baseline / (read_pfm(scene / "disp0GT.pfm") + doffs)
    return gt, np.asarray(Image.open(scene / "mask0nocc.png")) == 255


@pytest.mark.parametrize("calibration", ["calib.txt", "numbers"])
def test_stereo_on_middlebury_matches_ground_truth(client, shared_data, calibration):
    scene = shared_data / "middlebury" / "Adirondack"
    if calibration == "calib.txt":
        calib = dict(calib=handle_file(str(scene / "calib.txt")))
    else:
        calib = dict(calib=None, focal_px=ADIRONDACK[0], baseline_m=ADIRONDACK[1],
                     doffs=ADIRONDACK[2])
    depth_npy, disp_npy, png16, sidecar, glb, fused_npy, info = client.predict(
        left=handle_file(str(scene / "im0.png")), right=handle_file(str(scene / "im1.png")),
        **calib, api_name="/stereo")
    depth, disparity = np.load(depth_npy), np.load(disp_npy)
    assert depth.shape == disparity.shape == (496, 718)
    assert info["calibration"]["focal_px"] == pytest.approx(ADIRONDACK[0])
    assert info["calibration"]["baseline_m"] == pytest.approx(ADIRONDACK[1])
    gt, nocc = adirondack_truth(scene)
    ok = nocc & np.isfinite(gt) & np.isfinite(depth)
    assert ok.sum() > 0.8 * (nocc & np.isfinite(gt)).sum()
    assert np.mean(np.abs(depth[ok] - gt[ok]) / gt[ok]) <= 0.03
    meta = json.loads(Path(sidecar).read_text())
    assert meta["kind"] == "metric_depth" and meta["intrinsics"]["source"] == "calib"
    assert decode_png16(Path(png16), meta).shape == (496, 718) and Path(glb).stat().st_size > 0
    assert fused_npy is None and info["mono_fill"] is None


def test_the_bundled_stereo_example_runs(client):
    """The Stereo tab's example (a ray-cast room with its calib.txt) through ``/stereo``:
    depth within 5 % of the ray-caster's exact depth on most pixels."""
    from depthweb.training.stereo_pair import render_stereo_pair
    from depthweb.ui.stereo_tab import EXAMPLE_DIR, _examples

    (left, right, calib, mode, mono), = _examples()
    assert mode == "rectified" and mono == "none" and Path(left).parent == EXAMPLE_DIR
    depth_npy, *_, info = client.predict(left=handle_file(left), right=handle_file(right),
                                         calib=handle_file(calib), api_name="/stereo")
    depth = np.load(depth_npy)
    truth = render_stereo_pair(3).left.depth  # the scene scripts/make_stereo_example.py renders
    ok = np.isfinite(depth) & np.isfinite(truth)
    assert ok.mean() > 0.8 and info["kind"] == "metric_depth"
    assert np.mean(np.abs(depth[ok] - truth[ok]) / truth[ok]) < 0.05
    assert not any("does not look rectified" in n for n in info["notes"])


def test_stereo_rectifies_from_features_through_the_api(client, tmp_path):
    """``rectify="no-focal"`` on the example with its right view rotated: disparity only,
    the rectification summary in the info."""
    import cv2

    from depthweb.ui.stereo_tab import _examples

    (left, right, *_), = _examples()
    img = cv2.imread(right)
    h, w = img.shape[:2]
    turned = cv2.warpAffine(img, cv2.getRotationMatrix2D((w / 2, h / 2), 1.5, 1.0), (w, h))
    cv2.imwrite(str(tmp_path / "right.png"), turned)
    *_, info = client.predict(left=handle_file(left), right=handle_file(str(tmp_path /
                                                                           "right.png")),
                              calib=None, rectify="no-focal", api_name="/stereo")
    rect = info["rectification"]
    assert info["kind"] == "relative_disparity" and rect["method"] == "fundamental"
    assert rect["epipolar_error_after_px"] < 0.5 < rect["epipolar_error_before_px"]


def test_stereo_holes_are_filled_by_the_aligned_mono_model(client, shared_data):
    scene = shared_data / "middlebury" / "Adirondack"
    depth_npy, *_, fused_npy, info = client.predict(
        left=handle_file(str(scene / "im0.png")), right=handle_file(str(scene / "im1.png")),
        calib=handle_file(str(scene / "calib.txt")), mono_model=RELATIVE_MODEL,
        api_name="/stereo")
    depth, fused = np.load(depth_npy), np.load(fused_npy)
    stereo_ok = np.isfinite(depth)
    np.testing.assert_array_equal(fused[stereo_ok], depth[stereo_ok])  # stereo wins
    assert np.isfinite(fused).mean() > np.isfinite(depth).mean()  # mono fills holes
    fill = info["mono_fill"]
    assert fill["model"] == RELATIVE_MODEL and fill["space"] == "inverse depth"
    assert fill["stereo_valid_fraction"] == pytest.approx(stereo_ok.mean(), abs=1e-6)


def test_costly_or_unrectifiable_stereo_gets_one_sentence(client, studio, tmp_path):
    """Issue 10 item 3 over HTTP: a 2900x2000 pair whose calib asks for 2880 disparities
    (1.7e10 pixel-disparities, over the default cap of 1e9) is refused before matching and
    writes nothing; a pair of unrelated pictures is refused when asked to rectify it."""
    for name in ("l.png", "r.png"):
        Image.new("RGB", (2900, 2000), (90, 120, 150)).save(tmp_path / name)
    calib = tmp_path / "calib.txt"
    calib.write_text("cam0=[3000 0 1450; 0 3000 1000; 0 0 1]\ndoffs=0\nbaseline=100\n"
                     "width=2900\nheight=2000\nndisp=2880\n")
    before = sorted(p for p in studio.output_dir.rglob("*") if p.is_file())
    with pytest.raises(AppError) as err:
        client.predict(left=handle_file(str(tmp_path / "l.png")),
                       right=handle_file(str(tmp_path / "r.png")),
                       calib=handle_file(str(calib)), api_name="/stereo")
    message = str(err.value)
    assert "over this server's limit" in message and "2880 disparities" in message
    assert message.count("\n") == 0
    assert sorted(p for p in studio.output_dir.rglob("*") if p.is_file()) == before
    left, right = small_photo(tmp_path, (320, 240), 3), small_photo(tmp_path, (320, 240), 4)
    with pytest.raises(AppError, match="do not overlap enough"):
        client.predict(left=handle_file(str(left)), right=handle_file(str(right)), calib=None,
                       rectify="features", api_name="/stereo")


def _bad_requests(tmp_path: Path) -> dict:
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    big = tmp_path / "big.png"  # 3000x2100 = 6.3 MP, over the test app's 6 MP limit
    Image.new("RGB", (3000, 2100), (90, 120, 150)).save(big)
    left, right = small_photo(tmp_path, (96, 64), 1), small_photo(tmp_path, (80, 64), 2)
    photo = handle_file(str(small_photo(tmp_path)))
    return {
        "not-an-image": ("/predict", dict(image=handle_file(str(text))), "not an image"),
        "unknown-model": ("/predict", dict(image=photo, model="depth-anything-v9"),
                          "Unknown model 'depth-anything-v9'"),
        "weights-missing": ("/predict", dict(image=photo, model="depth-pro"),
                            "depthweb download depth-pro"),
        "too-many-pixels": ("/predict", dict(image=handle_file(str(big))), "the limit is 6 MP"),
        "bad-anchors": ("/predict", dict(image=photo, anchors="[[1, 2]]"), "Anchors must be"),
        "one-model": ("/compare", dict(image=photo, models=[RELATIVE_MODEL]), "Choose 2 to 4"),
        "no-calibration": ("/stereo", dict(left=handle_file(str(left)),
                                           right=handle_file(str(left))), "calib.txt"),
        "sizes-differ": ("/stereo", dict(left=handle_file(str(left)),
                                         right=handle_file(str(right)), focal_px=500,
                                         baseline_m=0.1), "same size"),
    }


@pytest.mark.parametrize("case", ["not-an-image", "unknown-model", "weights-missing",
                                  "too-many-pixels", "bad-anchors", "one-model",
                                  "no-calibration", "sizes-differ"])
def test_bad_input_gives_one_sentence_and_the_app_keeps_serving(client, tmp_path, case):
    endpoint, kwargs, expected = _bad_requests(tmp_path)[case]
    with pytest.raises(AppError) as err:
        client.predict(**kwargs, api_name=endpoint)
    message = str(err.value)
    assert expected in message
    assert "Traceback" not in message and message.count("\n") == 0
    npy = predict(client, small_photo(tmp_path, seed=7))[0]  # still answers
    assert np.load(npy).shape == (64, 96)


def test_outputs_stay_in_the_output_dir_and_the_working_dir_stays_empty(client, studio,
                                                                       tmp_path):
    predict(client, small_photo(tmp_path, seed=9))
    assert list(studio.cwd.iterdir()) == []
    folders = [p for p in studio.output_dir.iterdir() if p.is_dir()]
    assert folders and all(p.name.startswith("req-") for p in folders)
    assert any(p.name == "small9.npy" for f in folders for p in f.iterdir())


def test_uploads_over_the_size_limit_are_refused_by_the_server(studio, client, tmp_path):
    import httpx

    from tests.app.studio_server import MAX_UPLOAD_MB

    payload = np.random.default_rng(0).bytes((MAX_UPLOAD_MB + 1) * 1024 * 1024)
    reply = httpx.post(f"{studio.url}gradio_api/upload", timeout=60,
                       files={"files": ("big.png", payload, "image/png")})
    assert reply.status_code == 413
    npy = predict(client, small_photo(tmp_path, seed=8))[0]  # still answers
    assert np.load(npy).shape == (64, 96)
