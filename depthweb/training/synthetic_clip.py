"""Synthetic video clips with exact depth: a camera moving through one ray-cast scene.

``render_clip(seed, frames)`` draws a scene (:mod:`depthweb.training.scenes`), then renders it
from a camera that moves forward along its viewing direction and turns slowly, so most of the
picture changes a little between frames and the ground truth is exact for every frame. The
lighting, sky and sensor noise are drawn once per clip; exposure is automatic per frame (as in a
phone). Shapes: ``rgb`` (T, H, W, 3) uint8, ``depth`` (T, H, W) float32 metres (``inf`` = sky).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from depthweb.training.raycast import rotation
from depthweb.training.scenes import indoor_scene, outdoor_scene
from depthweb.training.synthetic import render
from depthweb.types import Intrinsics


@dataclass(frozen=True)
class SyntheticClip:
    """Frames of one moving camera: ``rgb`` (T, H, W, 3) uint8, ``depth`` (T, H, W) float32 m."""

    rgb: np.ndarray
    depth: np.ndarray
    intrinsics: Intrinsics
    fps: float
    outdoor: bool

    def __len__(self) -> int:
        return int(self.rgb.shape[0])


def _free_distance(depth: np.ndarray) -> float:
    """Metres ahead that are free: the 5th percentile depth of the central fifth of the view."""
    h, w = depth.shape
    centre = depth[2 * h // 5: 3 * h // 5, 2 * w // 5: 3 * w // 5]
    finite = centre[np.isfinite(centre)]
    return float(np.percentile(finite, 5)) if finite.size else math.inf


def render_clip(
    seed: int,
    frames: int = 24,
    height: int = 192,
    width: int = 256,
    *,
    outdoor: bool = True,
    speed_m: float | None = None,
    turn_deg: float = 4.0,
    fps: float = 12.0,
) -> SyntheticClip:
    """Render ``frames`` frames of the scene of ``seed`` seen from a moving camera.

    The camera moves ``speed_m`` metres per frame along its horizontal viewing direction
    (default 0.4 m outdoors, 0.03 m indoors, never more than half the free distance ahead over
    the whole clip) and turns by up to ``turn_deg`` degrees (yaw, one slow sine period).
    """
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    rng = np.random.default_rng(seed)
    scene = (outdoor_scene if outdoor else indoor_scene)(rng, height, width)
    cam0 = scene.camera
    light_seed = int(rng.integers(0, 2**31))
    first = render(scene, height, width, np.random.default_rng(light_seed))
    step = speed_m if speed_m is not None else (0.4 if outdoor else 0.03)
    forward = cam0.rot[:, 2] * np.array([1.0, 0.0, 1.0])
    forward /= max(np.linalg.norm(forward), 1e-9)
    if frames > 1:
        step = min(step, 0.5 * max(_free_distance(first.depth) - 0.5, 0.0) / (frames - 1))
    rgb, depth = [first.rgb], [first.depth]
    for i in range(1, frames):
        yaw = math.radians(turn_deg) * math.sin(2 * math.pi * i / max(frames, 2))
        turn = rotation(yaw, 0.0, 0.0) @ np.diag([1.0, -1.0, 1.0])  # pure yaw about world y
        cam = replace(cam0, rot=turn @ cam0.rot, origin=cam0.origin + forward * step * i)
        frame = render(replace(scene, camera=cam), height, width,
                       np.random.default_rng(light_seed))
        rgb.append(frame.rgb)
        depth.append(frame.depth)
    return SyntheticClip(np.stack(rgb), np.stack(depth), first.intrinsics, fps, scene.outdoor)
