"""A rectified stereo pair rendered by the ray-caster, with exact depth and disparity.

The right camera is the left one moved by ``baseline_m`` along its own x axis (same rotation,
same intrinsics), so the pair is rectified by construction and the disparity of a left pixel is
exactly ``fx * baseline / depth`` (``doffs`` 0). Used for the Studio's bundled Stereo example
(``scripts/make_stereo_example.py``) and its test.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from depthweb.training.scenes import indoor_scene
from depthweb.training.synthetic import SyntheticFrame, render


class _SharedExposure:
    """A generator whose ``uniform`` draws (exposure, noise level) repeat for both views while
    ``normal`` draws (sensor noise) differ, as two identical cameras would give."""

    def __init__(self, seed: int, noise_seed: int) -> None:
        self._shared = np.random.default_rng(seed)
        self._noise = np.random.default_rng(noise_seed)

    def uniform(self, *args, **kwargs):
        return self._shared.uniform(*args, **kwargs)

    def normal(self, *args, **kwargs):
        return self._noise.normal(*args, **kwargs)


@dataclass(frozen=True)
class StereoPair:
    """``left``/``right`` uint8 (H, W, 3); ``depth`` float32 (H, W) metres of the left view
    (``inf`` where no surface); ``disparity`` = ``fx * baseline_m / depth`` pixels."""

    left: SyntheticFrame
    right: SyntheticFrame
    baseline_m: float

    @property
    def disparity(self) -> np.ndarray:
        return (self.left.intrinsics.fx * self.baseline_m / self.left.depth).astype(np.float32)

    def calib_txt(self) -> str:
        """A Middlebury-style ``calib.txt`` for the pair (baseline in millimetres)."""
        i = self.left.intrinsics
        h, w = self.left.depth.shape
        cam = f"[{i.fx:.6f} 0 {i.cx:.6f}; 0 {i.fy:.6f} {i.cy:.6f}; 0 0 1]"
        ndisp = int(np.ceil(np.nanmax(self.disparity[np.isfinite(self.disparity)]) / 16) * 16)
        return (f"cam0={cam}\ncam1={cam}\ndoffs=0\nbaseline={self.baseline_m * 1000:.3f}\n"
                f"width={w}\nheight={h}\nndisp={ndisp}\n")


def render_stereo_pair(seed: int, height: int = 288, width: int = 384,
                       baseline_m: float = 0.12) -> StereoPair:
    """Render the indoor scene of ``seed`` from a left camera and a right camera
    ``baseline_m`` to its right (see the module docstring)."""
    scene = indoor_scene(np.random.default_rng(seed), height, width)
    cam = scene.camera
    right_cam = replace(cam, origin=cam.origin + cam.rot[:, 0] * baseline_m)
    left = render(scene, height, width, _SharedExposure(seed + 1, seed + 2))
    right = render(replace(scene, camera=right_cam), height, width,
                   _SharedExposure(seed + 1, seed + 3))
    return StereoPair(left, right, baseline_m)


__all__ = ["StereoPair", "render_stereo_pair"]
