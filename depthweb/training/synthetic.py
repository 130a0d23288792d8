"""Procedurally rendered synthetic scenes with exact depth (indoor rooms, outdoor streets).

``render_scene(seed, height, width)`` returns an RGB image and its exact depth along the optical
axis (metres; ``inf`` for sky), with the camera intrinsics used. Scenes are seeded: the same seed
gives the same frame, byte for byte. Monocular cues are rendered on purpose: Lambertian shading
with shadows, textures in metres (texture gradients), perspective convergence of floors, walls and
roads, occlusion, and haze outdoors. Layouts (rooms up to 10 m deep; streets whose depth runs to
the horizon, 80 m and beyond, with the sky at infinity) are drawn in
:mod:`depthweb.training.scenes`; ray casting is :mod:`depthweb.training.raycast`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from depthweb.training.raycast import (
    cast,
    occluded,
    parallel_selector,
    screen_selector,
    value_noise,
)
from depthweb.training.scenes import Light, Scene, indoor_scene, outdoor_scene
from depthweb.types import Intrinsics, IntrinsicsSource

__all__ = ["Light", "Scene", "SyntheticFrame", "render", "render_scene"]


@dataclass(frozen=True)
class SyntheticFrame:
    """``rgb`` uint8 (H, W, 3); ``depth`` float32 (H, W) metres, ``inf`` = sky."""

    rgb: np.ndarray
    depth: np.ndarray
    intrinsics: Intrinsics
    outdoor: bool



def _sky(d: np.ndarray, rng: np.random.Generator, overcast: bool) -> np.ndarray:
    """Sky colours (N, 3) from ray directions (N, 3): a horizon-to-zenith gradient with clouds,
    or a flat bright grey when overcast."""
    dn = d / np.linalg.norm(d, axis=1, keepdims=True)
    up = np.clip(dn[:, 1] * 2.5, 0, 1)[:, None]
    if overcast:
        grey = rng.uniform(0.75, 1.0)
        return np.full((len(d), 3), grey) * (1 - 0.1 * up)
    horizon, zenith = rng.uniform(0.75, 0.95, 3), np.array([0.3, 0.5, 0.85]) * rng.uniform(0.8, 1.1)
    col = horizon * (1 - up) + zenith * up
    uv = dn[:, [0, 2]] / np.maximum(dn[:, 1:2], 0.05) * 2.0
    cloud = np.clip(value_noise(rng.uniform(0, 1, (16, 16)), uv) * 1.6 - 0.6, 0, 1)
    return col * (1 - cloud[:, None] * 0.7) + cloud[:, None] * 0.7


def _shade(scene: Scene, p: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Irradiance (N,) at points ``p`` (N, 3) with normals ``n`` (N, 3): ambient, light, shadow."""
    light = scene.light
    sky_light = light.ambient * (0.7 + 0.3 * n[:, 1])  # surfaces facing up see more sky
    select = None
    if light.direction is not None:
        to_l = np.broadcast_to(light.direction, p.shape)
        select = parallel_selector(p + n * 1e-3, light.direction)
        dist = np.full(len(p), np.inf)
        falloff = np.ones(len(p))
    else:
        vec = light.position - p
        dist = np.linalg.norm(vec, axis=1)
        to_l = vec / dist[:, None]
        falloff = 4.0 / (1.0 + 0.35 * dist**2)
    lambert = np.clip(np.einsum("ij,ij->i", n, to_l), 0, None)
    lit = lambert > 0
    shadow = np.zeros(len(p), dtype=bool)
    blocked = occluded(scene.prims, p + n * 1e-3, to_l, dist, select)
    shadow[lit] = blocked[lit]
    return sky_light + light.intensity * lambert * falloff * ~shadow


def render(scene: Scene, height: int, width: int, rng: np.random.Generator) -> SyntheticFrame:
    """Cast one ray per pixel; return the shaded image and exact depth."""
    cam = scene.camera
    d = cam.rays(height, width)
    t, idx = cast(scene.prims, cam.origin, d, screen_selector(cam, height, width))
    colour = _sky(d, rng, scene.overcast) if scene.outdoor else np.zeros((len(d), 3))
    hit = np.flatnonzero(idx >= 0)
    p = cam.origin + t[hit, None] * d[hit]
    normals = np.zeros((len(hit), 3))
    albedo = np.zeros((len(hit), 3))
    dh, th, ih = d[hit], t[hit], idx[hit]
    ray_len = np.linalg.norm(dh, axis=1)
    for k in np.unique(ih):
        sel = np.flatnonzero(ih == k)
        prim = scene.prims[k]
        n, uv = prim.surface(p[sel], dh[sel])
        cos = np.abs(np.einsum("ij,ij->i", n, dh[sel])) / ray_len[sel]
        footprint = th[sel] * ray_len[sel] / cam.fx / np.maximum(cos, 0.1)
        normals[sel], albedo[sel] = n, prim.material.albedo(uv, footprint)
    surf = albedo * _shade(scene, p, normals)[:, None]
    if math.isfinite(scene.fog_distance):
        haze = 1.0 - np.exp(-th * ray_len / scene.fog_distance)
        surf = surf * (1 - haze[:, None]) + haze[:, None] * np.array([0.8, 0.85, 0.9])
    colour[hit] = surf
    img = colour.reshape(height, width, 3)
    img = img / max(np.percentile(img, 97), 0.2) * rng.uniform(0.75, 0.95)
    img = img + rng.normal(0, rng.uniform(0.0, 0.02), img.shape)
    rgb = (np.clip(img, 0, 1) ** (1 / 2.2) * 255 + 0.5).astype(np.uint8)
    depth = t.reshape(height, width).astype(np.float32)
    intr = Intrinsics(cam.fx, cam.fy, cam.cx, cam.cy, IntrinsicsSource.CALIB, "synthetic camera")
    return SyntheticFrame(rgb, depth, intr, scene.outdoor)


def render_scene(seed: int | Sequence[int], height: int = 192, width: int = 256,
                 outdoor: bool | None = None, outdoor_fraction: float = 0.5) -> SyntheticFrame:
    """Render the scene of ``seed`` (an int or ints, e.g. ``(dataset_seed, index)``);
    ``outdoor`` None picks indoor or outdoor by ``outdoor_fraction``."""
    rng = np.random.default_rng(seed)
    if outdoor is None:
        outdoor = bool(rng.uniform() < outdoor_fraction)
    scene = (outdoor_scene if outdoor else indoor_scene)(rng, height, width)
    return render(scene, height, width, rng)
