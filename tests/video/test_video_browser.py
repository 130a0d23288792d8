"""The Video tab in Debian's Chromium: upload a phone clip, the side-by-side WebM plays."""

from __future__ import annotations

import pytest

from tests.video.clips import phone_clip

pytestmark = pytest.mark.e2e


def test_video_tab_plays_the_side_by_side_clip(page, tmp_path, artifacts):
    clip = phone_clip(tmp_path / "IMG_0003.mov", frames=10)
    page.get_by_role("tab", name="Video").click()
    page.locator("#video-in input[type=file]").set_input_files(str(clip))
    page.wait_for_timeout(500)
    page.click("#video-run")
    video = page.locator("#video-out video")
    video.wait_for(state="attached", timeout=180_000)
    page.wait_for_function(
        "() => { const v = document.querySelector('#video-out video');"
        " return v && v.readyState >= 2 && v.duration > 0; }", timeout=60_000)
    facts = video.evaluate("v => ({ready: v.readyState, duration: v.duration, w: v.videoWidth,"
                           " h: v.videoHeight, err: v.error && v.error.code})")
    assert facts["err"] is None and facts["duration"] > 0.2
    assert (facts["w"], facts["h"]) == (384, 320)  # rotated 192x320 photo | depth
    video.evaluate("v => { v.muted = true; return v.play(); }")
    page.wait_for_function(  # it plays: the position moves (generous timeout, loaded machine)
        "() => document.querySelector('#video-out video').currentTime > 0", timeout=60_000)
    page.wait_for_selector("#video-plot .js-plotly-plot", timeout=60_000)
    assert "Frames" in page.locator("#video-info").inner_text()
    page.screenshot(path=str(artifacts / "video_tab.png"), full_page=True)


def test_video_tab_refuses_a_truncated_clip_in_one_sentence(page, tmp_path, artifacts):
    """A cut-off upload: one sentence in an error toast, no output video, the tab still works
    (its frame controls stay as they were)."""
    from tests.video.test_video_io import truncated

    page.get_by_role("tab", name="Video").click()
    page.locator("#video-in input[type=file]").set_input_files(str(truncated(tmp_path)))
    page.wait_for_timeout(500)
    page.click("#video-run")
    toast = page.locator(".toast-body:has-text('truncated')")
    toast.wait_for(state="visible", timeout=120_000)
    text = toast.inner_text()
    assert "truncated" in text and "Traceback" not in text
    assert page.locator("#video-out video").count() == 0
    page.screenshot(path=str(artifacts / "video_tab_truncated.png"), full_page=True)
