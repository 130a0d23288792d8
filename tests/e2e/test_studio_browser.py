"""The Studio in real headless Chromium: predict on a real photo, then stereo on Middlebury."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from depthweb.imaging import load_image
from depthweb.pfm import read_pfm

pytestmark = pytest.mark.e2e

EXAMPLES = Path(__file__).resolve().parents[2] / "assets" / "examples"  # shipped, with credits
PHOTO = "randy-fath-G1yhU1Ej-9A-unsplash.jpg"  # 1500x1000 chess pieces (Unsplash)
STUDENT = "depthweb-student"


def wait_for_image(page, selector: str, count: int = 1) -> None:
    """Wait until ``count`` <img> under ``selector`` have loaded pixels."""
    page.wait_for_function(
        """([sel, n]) => {
            const imgs = [...document.querySelectorAll(sel + ' img')];
            return imgs.length >= n
                && imgs.slice(0, n).every(i => i.complete && i.naturalWidth > 0);
        }""",
        arg=[selector, count],
    )


def choose_student(page) -> None:
    """Pick the bundled student in the Predict tab's model dropdown."""
    page.locator("#predict-model input").click()
    page.get_by_role("option", name=re.compile(STUDENT)).first.click()
    page.wait_for_function("() => document.querySelector('#predict-model input').value"
                           f".includes('{STUDENT}')")


def click_image_pixel(page, selector: str, u: float, v: float) -> None:
    """Click the displayed image under ``selector`` where pixel ``(u, v)`` of the image is."""
    wait_for_image(page, selector)
    box = page.evaluate(
        """(sel) => {
            const img = document.querySelector(sel + ' img');
            const r = img.getBoundingClientRect();
            return {x: r.x, y: r.y, w: r.width, h: r.height,
                    nw: img.naturalWidth, nh: img.naturalHeight};
        }""",
        selector,
    )
    scale = min(box["w"] / box["nw"], box["h"] / box["nh"], 1.0)
    x0 = box["x"] + (box["w"] - box["nw"] * scale) / 2
    y0 = box["y"] + (box["h"] - box["nh"] * scale) / 2
    page.mouse.click(x0 + (u + 0.5) * scale, y0 + (v + 0.5) * scale)


def test_predict_a_real_photo_slider_3d_and_npy_download(page, artifacts, tmp_path):
    photo = EXAMPLES / PHOTO
    height, width = load_image(photo).rgb.shape[:2]
    choose_student(page)  # the bundled model: real shapes, so one anchor lands on a surface
    page.locator("#predict-photo input[type=file]").set_input_files(str(photo))
    wait_for_image(page, "#predict-photo")
    page.click("#predict-run")

    wait_for_image(page, "#predict-slider", count=2)  # photo and colourised depth
    page.wait_for_selector("#predict-plot .js-plotly-plot .gl-container canvas", state="attached")
    page.wait_for_function(
        "() => { const p = document.querySelector('#predict-plot .js-plotly-plot');"
        " const d = p && p._fullData && p._fullData[0];"
        " return d && d.type === 'mesh3d' && d.i.length > 1000; }")
    title = page.locator("#predict-plot .gtitle").text_content()
    assert "shape only, unknown scale" in title
    info = page.locator("#predict-info").inner_text()
    assert "relative_disparity" in info and "assumed_fov" in info
    page.locator("#predict-slider").scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts / "predict_top.png"))
    page.locator("#predict-plot").scroll_into_view_if_needed()
    page.wait_for_timeout(500)
    page.screenshot(path=str(artifacts / "predict_3d.png"))

    link = page.locator('#predict-downloads a[download$=".npy"]').first
    with page.expect_download() as download:
        link.click()
    saved = tmp_path / "depth.npy"
    download.value.save_as(saved)
    depth = np.load(saved)
    assert depth.shape == (height, width) and depth.dtype == np.float32

    clicks = "#predict-clicks"
    page.locator(clicks).scroll_into_view_if_needed()
    wait_for_image(page, clicks)
    click_image_pixel(page, clicks, width * 0.3, height * 0.5)
    page.wait_for_function("() => document.querySelector('#predict-measure').innerText"
                           ".includes('pixel')")
    click_image_pixel(page, clicks, width * 0.7, height * 0.6)
    page.wait_for_function("() => document.querySelector('#predict-measure').innerText"
                           ".includes('Distance')")
    readout = page.locator("#predict-measure").inner_text()
    assert "needs metric depth" in readout  # a relative model measures nothing in metres
    page.screenshot(path=str(artifacts / "predict_measure.png"))

    # One scale anchor (2 m at the centre) scales the 3D shape to metres; A-B is then in metres
    # and must match the aligned depth map the downloads then offer.
    page.get_by_label("Add anchor").check()
    page.locator("#predict-anchor-depth input").fill("2.0")
    click_image_pixel(page, clicks, width * 0.5, height * 0.5)
    page.wait_for_function("() => document.querySelector('#predict-anchors')"
                           ".innerText.includes('750')")
    page.click("#predict-align")
    page.wait_for_function("() => document.querySelector('#predict-measure').innerText"
                           ".includes(' m (3D')", timeout=90_000)
    readout = page.locator("#predict-measure").inner_text()
    points = [tuple(map(int, m)) for m in re.findall(r"pixel \((\d+), (\d+)\)", readout)]
    measured = float(re.search(r"Distance A.B\*?\*?: ([0-9.]+) m", readout).group(1))
    info = page.locator("#predict-info").inner_text()
    assert "Aligned" in info and "scale (shift from the shape rule) fitted" in info
    page.wait_for_selector('#predict-downloads a[download$=".glb"]', timeout=120_000)
    with page.expect_download() as download:
        page.locator('#predict-downloads a[download$=".npy"]').first.click()
    download.value.save_as(tmp_path / "aligned.npy")
    aligned = np.load(tmp_path / "aligned.npy")
    r, c = round(height * 0.5), round(width * 0.5)  # the click lands within a pixel of it
    assert np.nanmin(np.abs(aligned[r - 1:r + 2, c - 1:c + 2] - 2.0)) < 2e-4
    f = 0.5 * width / np.tan(np.radians(30.0))  # the assumed 60 deg horizontal FOV
    xyz = [np.array([(u - width / 2) / f, (v - height / 2) / f, 1.0]) * aligned[v, u]
           for u, v in points]
    assert measured == pytest.approx(float(np.linalg.norm(xyz[0] - xyz[1])), abs=1.5e-3)
    page.screenshot(path=str(artifacts / "predict_aligned.png"))

    wait_for_image(page, "#predict-normals")
    page.locator("#predict-model3d").scroll_into_view_if_needed()
    page.wait_for_selector("#predict-model3d canvas", state="visible")
    page.wait_for_timeout(1500)
    page.locator("#predict-plot").screenshot(path=str(artifacts / "predict_3d_aligned.png"))
    page.locator("#predict-model3d").screenshot(path=str(artifacts / "predict_glb.png"))


def smooth_gt_pixel(scene: Path) -> tuple[int, int]:
    """A non-occluded pixel whose 15x15 ground-truth neighbourhood is nearly constant."""
    disp = read_pfm(scene / "disp0GT.pfm")
    nocc = np.asarray(Image.open(scene / "mask0nocc.png")) == 255
    h, w = disp.shape
    best, best_spread = None, np.inf
    for v in range(60, h - 60, 8):
        for u in range(200, w - 60, 8):
            win = disp[v - 7:v + 8, u - 7:u + 8]
            if not (nocc[v - 7:v + 8, u - 7:u + 8].all() and np.isfinite(win).all()):
                continue
            spread = float(win.max() - win.min())
            if spread < best_spread:
                best, best_spread = (u, v), spread
    assert best is not None
    return best


def test_stereo_tab_reports_depth_matching_ground_truth(page, shared_data, artifacts):
    scene = shared_data / "middlebury" / "Adirondack"
    page.get_by_role("tab", name="Stereo").click()
    page.locator("#stereo-left input[type=file]").set_input_files(str(scene / "im0.png"))
    page.locator("#stereo-right input[type=file]").set_input_files(str(scene / "im1.png"))
    page.locator("#stereo-calib input[type=file]").set_input_files(str(scene / "calib.txt"))
    wait_for_image(page, "#stereo-left")
    wait_for_image(page, "#stereo-right")
    page.click("#stereo-run")
    wait_for_image(page, "#stereo-depth")
    wait_for_image(page, "#stereo-disparity")
    page.wait_for_selector("#stereo-plot .js-plotly-plot .gl-container canvas", state="attached")

    u, v = smooth_gt_pixel(scene)
    page.locator("#stereo-depth").scroll_into_view_if_needed()
    click_image_pixel(page, "#stereo-depth", u, v)
    page.wait_for_function("() => document.querySelector('#stereo-probe').innerText"
                           ".includes('stereo depth')")
    text = page.locator("#stereo-probe").inner_text()
    m = re.search(r"Pixel \((\d+), (\d+)\).*?stereo depth ([0-9.]+) m", text)
    assert m, text
    pu, pv, reported = int(m.group(1)), int(m.group(2)), float(m.group(3))
    assert abs(pu - u) <= 2 and abs(pv - v) <= 2  # the click landed where it was aimed
    f, baseline_m, doffs = 1038.018, 0.176252, 53.271
    truth = f * baseline_m / (float(read_pfm(scene / "disp0GT.pfm")[pv, pu]) + doffs)
    assert abs(reported - truth) / truth < 0.03, (reported, truth)
    page.screenshot(path=str(artifacts / "stereo.png"), full_page=True)
    page.locator("#stereo-model3d").scroll_into_view_if_needed()
    page.wait_for_selector("#stereo-model3d canvas", state="visible")
    page.wait_for_timeout(1500)
    page.locator("#stereo-model3d").screenshot(path=str(artifacts / "stereo_glb.png"))


def test_compare_two_models_side_by_side(page, artifacts):
    photo = EXAMPLES / "monodepth2_test_image.jpg"
    page.get_by_role("tab", name="Compare").click()
    page.locator("#compare-photo input[type=file]").set_input_files(str(photo))
    wait_for_image(page, "#compare-photo")
    page.click("#compare-run")
    wait_for_image(page, "#compare-gallery", count=2)
    wait_for_image(page, "#compare-agreement")
    page.wait_for_function("() => document.querySelector('#compare-summary')"
                           ".innerText.includes('reference')")
    table = page.locator("#compare-summary").inner_text()
    assert "depth-anything-v2-small" in table and "depth-anything-v2-metric-indoor-small" in table
    page.screenshot(path=str(artifacts / "compare.png"), full_page=True)
