"""Our meshes in the real Gradio viewers, in Chromium: upright, unmirrored, correctly coloured.

A frontal plane coloured in four quadrants goes to ``gr.Model3D`` as a textured GLB (Babylon.js,
shown from the capture viewpoint with ``camera_position=(90, 90, None)``) and to ``gr.Plot`` as
``mesh_to_plotly`` (typed-array vertex colours); the rendered quadrants must keep their colours
and places.
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
import pytest
from test_geometry_scenes import make_intrinsics

from depthweb.geometry.mesh import build_grid_mesh
from depthweb.geometry.meshfile import write_glb
from depthweb.services.mesh_figure import mesh_to_plotly

QUADRANTS = {"tl": (230, 30, 30), "tr": (30, 200, 30), "bl": (30, 30, 230), "br": (230, 220, 30)}

pytestmark = [pytest.mark.e2e]


def quadrant_photo(h: int, w: int) -> np.ndarray:
    img = np.empty((h, w, 3), dtype=np.uint8)
    img[: h // 2, : w // 2] = QUADRANTS["tl"]
    img[: h // 2, w // 2 :] = QUADRANTS["tr"]
    img[h // 2 :, : w // 2] = QUADRANTS["bl"]
    img[h // 2 :, w // 2 :] = QUADRANTS["br"]
    return img


def colourful(img: np.ndarray) -> np.ndarray:
    """Saturated pixels: the quadrant colours, not the viewers' white, grey or black chrome."""
    return img.max(axis=-1).astype(int) - img.min(axis=-1) > 80


def screenshot_when_rendered(element, timeout_s: float = 60.0) -> np.ndarray:
    """Screenshot of the viewer element once the mesh shows (enough saturated pixels)."""
    from PIL import Image

    element.wait_for(state="visible", timeout=timeout_s * 1000)
    deadline = time.monotonic() + timeout_s
    while True:
        img = np.asarray(Image.open(io.BytesIO(element.screenshot())).convert("RGB"))
        if colourful(img).mean() > 0.03 or time.monotonic() > deadline:
            return img
        time.sleep(0.5)


def render_in_gradio(
    browser, build_ui, selector: str, allowed: Path
) -> tuple[np.ndarray, list[str]]:
    import gradio as gr

    with gr.Blocks() as demo:
        build_ui(gr)
    demo.launch(prevent_thread_lock=True, allowed_paths=[str(allowed)], quiet=True)
    errors: list[str] = []
    try:
        page = browser.new_page(viewport={"width": 900, "height": 700})
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(demo.local_url, wait_until="networkidle")
        img = screenshot_when_rendered(page.locator(selector).first)
        page.close()
    finally:
        demo.close()
    return img, errors


def nearest_quadrant(pixels: np.ndarray) -> str:
    colours = np.array(list(QUADRANTS.values()), dtype=np.float64)
    mean = pixels.reshape(-1, 3).astype(np.float64).mean(axis=0)
    return list(QUADRANTS)[int(np.argmin(np.linalg.norm(colours - mean, axis=1)))]


def assert_quadrants(img: np.ndarray) -> None:
    lit = colourful(img)
    assert lit.mean() > 0.03, "nothing rendered"
    rows, cols = np.nonzero(lit)
    r0, r1, c0, c1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    rm, cm = (r0 + r1) // 2, (c0 + c1) // 2
    pad_r, pad_c = (r1 - r0) // 8, (c1 - c0) // 8  # stay clear of the borders between colours
    seen = {
        "tl": nearest_quadrant(img[r0 + pad_r : rm - pad_r, c0 + pad_c : cm - pad_c]),
        "tr": nearest_quadrant(img[r0 + pad_r : rm - pad_r, cm + pad_c : c1 - pad_c]),
        "bl": nearest_quadrant(img[rm + pad_r : r1 - pad_r, c0 + pad_c : cm - pad_c]),
        "br": nearest_quadrant(img[rm + pad_r : r1 - pad_r, cm + pad_c : c1 - pad_c]),
    }
    assert seen == {name: name for name in QUADRANTS}


def quadrant_mesh():
    h, w = 96, 128
    k = make_intrinsics(w, h, f=120.0)
    photo = quadrant_photo(h, w)
    return build_grid_mesh(np.full((h, w), 2.0), photo, k, stride=2), photo


def test_textured_glb_renders_upright_in_model3d(browser, tmp_path):
    mesh, photo = quadrant_mesh()
    path = tmp_path / "plane.glb"
    write_glb(mesh, path, texture=photo, texture_format="png")
    img, errors = render_in_gradio(
        browser,
        lambda gr: gr.Model3D(
            value=str(path), clear_color=(0, 0, 0, 1), camera_position=(90, 90, None)
        ),
        "canvas",
        tmp_path,
    )
    assert not errors
    assert_quadrants(img)


def test_plotly_mesh_renders_upright_in_gr_plot(browser, tmp_path):
    mesh, _ = quadrant_mesh()
    fig = mesh_to_plotly(mesh, title="quadrants")
    img, errors = render_in_gradio(
        browser, lambda gr: gr.Plot(value=fig), ".js-plotly-plot", tmp_path
    )
    assert not errors
    assert_quadrants(img)
