"""Synthetic ray-cast clips: exact depth per frame from a moving camera, seeded."""

from __future__ import annotations

import numpy as np
import pytest

from depthweb.geometry.temporal import stable_pixels
from depthweb.training.synthetic_clip import render_clip


@pytest.mark.parametrize("outdoor", [False, True])
def test_clip_moves_the_camera_and_is_seeded(outdoor):
    clip = render_clip(7, frames=4, height=48, width=64, outdoor=outdoor)
    assert clip.rgb.shape == (4, 48, 64, 3) and clip.depth.shape == (4, 48, 64)
    assert clip.rgb.dtype == np.uint8 and clip.depth.dtype == np.float32
    finite = np.isfinite(clip.depth)
    assert finite.mean() > 0.3 and (clip.depth[finite] > 0).all()
    assert not np.array_equal(clip.depth[0], clip.depth[-1])  # the camera moved
    stable = stable_pixels(clip.depth)
    assert 0.0 < stable.mean() < 1.0  # some pixels keep their depth, others do not
    again = render_clip(7, frames=4, height=48, width=64, outdoor=outdoor)
    np.testing.assert_array_equal(clip.rgb, again.rgb)
    np.testing.assert_array_equal(clip.depth, again.depth)


def test_indoor_camera_never_reaches_what_it_faces():
    clip = render_clip(3, frames=6, height=48, width=64, outdoor=False, speed_m=5.0)
    centre = clip.depth[:, 20:28, 26:38]
    assert np.nanmin(np.where(np.isfinite(centre), centre, np.nan)) > 0.2
