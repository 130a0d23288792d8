"""The Stereo tab's bundled example in real Chromium: one click fills the pair and its
calib.txt, the matcher runs, and the pair is shown with horizontal guide lines."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from tests.e2e.test_studio_browser import wait_for_image

pytestmark = pytest.mark.e2e


def test_stereo_example_runs_and_shows_the_pair_with_guide_lines(page, artifacts):
    page.get_by_role("tab", name="Stereo").click()
    page.locator("#stereo-examples").get_by_text("Ray-cast room").click()
    wait_for_image(page, "#stereo-left")
    wait_for_image(page, "#stereo-right")
    page.wait_for_function("() => document.querySelector('#stereo-calib').innerText"
                           ".includes('181')")  # the example's calib.txt, 181 bytes
    page.click("#stereo-run")
    wait_for_image(page, "#stereo-depth")
    wait_for_image(page, "#stereo-pair")
    page.wait_for_function("() => document.querySelector('#stereo-info').innerText"
                           ".includes('metric_depth')")
    info = page.locator("#stereo-info").inner_text()
    assert "does not look rectified" not in info
    src = page.locator("#stereo-pair img").get_attribute("src")
    png = page.request.get(src).body() if not src.startswith("data:") else None
    pair = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")) if png else None
    if pair is not None:
        assert pair.shape[1] == 2 * 384 and pair.shape[0] == 288  # left | right
        green = (pair[..., 1] == 255) & (pair[..., 0] == 0) & (pair[..., 2] == 0)
        rows = np.flatnonzero(green.mean(axis=1) > 0.9)
        assert len(rows) >= 8  # full-width horizontal guide lines
    page.locator("#stereo-pair").scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts / "stereo_example.png"), full_page=True)
