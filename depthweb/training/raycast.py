"""Numpy ray casting for synthetic scenes: a pinhole camera, primitives, textured materials.

World frame: x right, y up, z forward. Camera frame: x right, y down, z forward (OpenCV).
Rays are built with a camera-frame z component of 1, so the ray parameter ``t`` of a hit *is*
its depth along the optical axis (what depth maps store). Pixel centres sit at ``(j + 0.5,
i + 0.5)``, matching ``Intrinsics.from_fov`` (``cx = W / 2``).

Shapes: ray origins ``o`` (3,) or (N, 3), directions ``d`` (N, 3); every ``intersect`` returns
``t`` (N,) with ``inf`` where the ray misses; ``surface`` returns normals (N, 3) facing the ray
and texture coordinates ``uv`` (N, 2) in metres of the surface.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

EPS = 1e-4


def rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Camera-to-world rotation (3, 3) for angles in radians (pitch > 0 looks up)."""
    cy, sy = math.cos(yaw), math.sin(yaw)
    cp, sp = math.cos(pitch), math.sin(pitch)
    cr, sr = math.cos(roll), math.sin(roll)
    r_yaw = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    r_pitch = np.array([[1, 0, 0], [0, cp, sp], [0, -sp, cp]])
    r_roll = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    flip = np.diag([1.0, -1.0, 1.0])  # camera y points down, world y up
    return r_yaw @ r_pitch @ r_roll @ flip


@dataclass(frozen=True)
class Camera:
    """Pinhole camera: intrinsics in pixels, ``rot`` camera-to-world (3, 3), ``origin`` (3,)."""

    fx: float
    fy: float
    cx: float
    cy: float
    rot: np.ndarray
    origin: np.ndarray

    def rays(self, height: int, width: int) -> np.ndarray:
        """World ray directions (H*W, 3), row-major, with camera-frame z = 1."""
        v, u = np.mgrid[0:height, 0:width].astype(np.float64) + 0.5
        cam = np.stack([(u - self.cx) / self.fx, (v - self.cy) / self.fy, np.ones_like(u)], -1)
        return cam.reshape(-1, 3) @ self.rot.T


def value_noise(grid: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Bilinear, tiled value noise: ``grid`` (G, G) in [0, 1], ``uv`` (N, 2) in grid cells."""
    g = grid.shape[0]
    x0 = np.floor(uv).astype(np.int64)
    f = uv - x0
    f = f * f * (3 - 2 * f)  # smoothstep
    i0, j0 = x0[:, 0] % g, x0[:, 1] % g
    i1, j1 = (i0 + 1) % g, (j0 + 1) % g
    a = grid[i0, j0] * (1 - f[:, 0]) + grid[i1, j0] * f[:, 0]
    b = grid[i0, j1] * (1 - f[:, 0]) + grid[i1, j1] * f[:, 0]
    return a * (1 - f[:, 1]) + b * f[:, 1]


@dataclass
class Material:
    """A two-colour pattern over surface coordinates in metres.

    ``pattern``: plain | checker | stripes | noise | gradient | lanes | road | windows.
    ``scale``: metres per period; ``param``: the road's half width (``road``). Patterns fade to
    their ``mean`` weight as a pixel's footprint grows past their finest ``feature`` (metres;
    half a period by default): cheap mip-mapping, so far textures do not alias but texture
    gradients remain a depth cue.
    """

    pattern: str
    color_a: np.ndarray
    color_b: np.ndarray
    scale: float = 1.0
    angle: float = 0.0
    grain: float = 0.08
    noise: np.ndarray = field(default_factory=lambda: np.full((8, 8), 0.5))
    param: float = 0.0
    feature: float | None = None
    mean: float = 0.5

    def albedo(self, uv: np.ndarray, footprint: np.ndarray) -> np.ndarray:
        """Colours (N, 3) in [0, 1] for coordinates ``uv`` (N, 2); ``footprint`` (N,) m/pixel."""
        c, s = math.cos(self.angle), math.sin(self.angle)
        q = uv @ np.array([[c, -s], [s, c]]) / self.scale
        w = self._weight(q)
        feature = self.feature if self.feature is not None else self.scale / 2
        fade = np.clip(1.0 - footprint / feature, 0.0, 1.0)
        w = self.mean + (w - self.mean) * fade
        gfade = np.clip(1.0 - footprint / 0.05, 0.0, 1.0)
        grain = (value_noise(self.noise, uv / 0.05) - 0.5) * self.grain * gfade
        col = self.color_a[None] * (1 - w[:, None]) + self.color_b[None] * w[:, None]
        return np.clip(col * (1.0 + grain[:, None]), 0.0, 1.0)

    def _weight(self, q: np.ndarray) -> np.ndarray:
        if self.pattern == "checker":
            return ((np.floor(q[:, 0]) + np.floor(q[:, 1])) % 2).astype(np.float64)
        if self.pattern == "stripes":
            return (q[:, 0] % 1.0 < 0.5).astype(np.float64)
        if self.pattern == "noise":
            n = 0.65 * value_noise(self.noise, q * 4) + 0.35 * value_noise(self.noise, q * 13)
            return np.clip((n - 0.5) * 2.2 + 0.5, 0, 1)
        if self.pattern == "gradient":
            return np.clip(q[:, 1] % 2.0 / 2.0, 0, 1)
        if self.pattern == "lanes":  # dashed lines across u, every 3.5 m, 3 m dashes every 9 m
            line = np.abs((q[:, 0] % 3.5) - 1.75) > 1.65
            return (line & (q[:, 1] % 9.0 < 3.0)).astype(np.float64)
        if self.pattern == "road":  # dashed lanes every 3.5 m, solid lines near both edges
            x, half = np.abs(q[:, 0]), self.param
            dashed = (np.abs((x + 1.75) % 3.5 - 1.75) < 0.08) & (q[:, 1] % 9.0 < 3.0)
            edge = np.abs(x - (half - 0.3)) < 0.1
            return ((dashed & (x < half - 1.0)) | edge).astype(np.float64)
        if self.pattern == "windows":  # a grid of panes, 60 % x 50 % of each period
            return ((q[:, 0] % 1.0 < 0.6) & (q[:, 1] % 1.0 < 0.5)).astype(np.float64)
        return np.zeros(len(q))


def _aabb(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """The 8 corners (8, 3) of the axis-aligned box from ``lo`` to ``hi``."""
    pick = np.array(np.meshgrid([0, 1], [0, 1], [0, 1])).reshape(3, -1).T
    return np.where(pick == 0, lo, hi)


def _facing(normals: np.ndarray, d: np.ndarray) -> np.ndarray:
    flip = np.einsum("ij,ij->i", normals, d) > 0
    normals[flip] *= -1
    return normals


@dataclass
class Plane:
    """Infinite plane ``normal . p = offset`` (unit ``normal``)."""

    normal: np.ndarray
    offset: float
    material: Material

    def intersect(self, o: np.ndarray, d: np.ndarray) -> np.ndarray:
        den = d @ self.normal
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (self.offset - np.atleast_2d(o) @ self.normal) / den
        return np.where((t > EPS) & np.isfinite(t), t, np.inf)

    def surface(self, p: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = self.normal
        a = np.cross(n, [0.0, 0.0, 1.0] if abs(n[2]) < 0.9 else [1.0, 0.0, 0.0])
        a /= np.linalg.norm(a)
        b = np.cross(n, a)
        normals = _facing(np.repeat(n[None], len(p), 0).astype(np.float64), d)
        return normals, np.stack([p @ a, p @ b], -1)


@dataclass
class Box:
    """Box with ``half`` sizes (3,) around ``center`` (3,), turned by ``yaw`` about world y."""

    center: np.ndarray
    half: np.ndarray
    yaw: float
    material: Material

    def _rot(self) -> np.ndarray:
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])

    def corners(self) -> np.ndarray:
        return (_aabb(-self.half, self.half)) @ self._rot().T + self.center

    def intersect(self, o: np.ndarray, d: np.ndarray) -> np.ndarray:
        if self.yaw:
            r = self._rot()
            lo, ld = (np.atleast_2d(o) - self.center) @ r, d @ r
        else:
            lo, ld = np.atleast_2d(o) - self.center, d
        lo = np.broadcast_to(lo, ld.shape)
        tmin = np.full(len(d), -np.inf)
        tmax = np.full(len(d), np.inf)
        with np.errstate(divide="ignore", invalid="ignore"):
            for k in range(3):  # slabs; fmin/fmax skip the NaN of 0 * inf
                inv = 1.0 / ld[:, k]
                t1 = (-self.half[k] - lo[:, k]) * inv
                t2 = (self.half[k] - lo[:, k]) * inv
                tmin = np.fmax(tmin, np.fmin(t1, t2))
                tmax = np.fmin(tmax, np.fmax(t1, t2))
        return np.where((tmax >= tmin) & (tmin > EPS), tmin, np.inf)

    def surface(self, p: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        r = self._rot()
        lp = (p - self.center) @ r
        axis = np.abs(lp / self.half).argmax(1)
        local_n = np.zeros_like(lp)
        rows = np.arange(len(p))
        local_n[rows, axis] = np.sign(lp[rows, axis])
        other = np.array([[2, 1], [0, 2], [0, 1]])[axis]  # two in-face coordinates
        uv = np.stack([lp[rows, other[:, 0]], lp[rows, other[:, 1]]], -1)
        return _facing(local_n @ r.T, d), uv


@dataclass
class Sphere:
    center: np.ndarray
    radius: float
    material: Material

    def corners(self) -> np.ndarray:
        return _aabb(self.center - self.radius, self.center + self.radius)

    def intersect(self, o: np.ndarray, d: np.ndarray) -> np.ndarray:
        oc = np.atleast_2d(o) - self.center
        a = np.einsum("ij,ij->i", d, d)
        b = 2 * np.einsum("ij,ij->i", np.broadcast_to(oc, d.shape), d)
        c = np.einsum("ij,ij->i", oc, oc) - self.radius**2
        disc = b * b - 4 * a * c
        sq = np.sqrt(np.maximum(disc, 0))
        t0, t1 = (-b - sq) / (2 * a), (-b + sq) / (2 * a)
        t = np.where(t0 > EPS, t0, t1)
        return np.where((disc >= 0) & (t > EPS), t, np.inf)

    def surface(self, p: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = (p - self.center) / self.radius
        ang = np.arctan2(n[:, 0], n[:, 2]) * self.radius
        return _facing(n, d), np.stack([ang, p[:, 1]], -1)


@dataclass
class Cylinder:
    """Vertical capped cylinder: axis through ``(x, z)``, radius, from ``y0`` to ``y1``."""

    x: float
    z: float
    radius: float
    y0: float
    y1: float
    material: Material

    def corners(self) -> np.ndarray:
        r = self.radius
        return _aabb(np.array([self.x - r, self.y0, self.z - r]),
                     np.array([self.x + r, self.y1, self.z + r]))

    def intersect(self, o: np.ndarray, d: np.ndarray) -> np.ndarray:
        o = np.broadcast_to(np.atleast_2d(o), d.shape)
        ox, oz = o[:, 0] - self.x, o[:, 2] - self.z
        a = d[:, 0] ** 2 + d[:, 2] ** 2
        b = 2 * (ox * d[:, 0] + oz * d[:, 2])
        c = ox**2 + oz**2 - self.radius**2
        disc = b * b - 4 * a * c
        sq = np.sqrt(np.maximum(disc, 0))
        with np.errstate(divide="ignore", invalid="ignore"):
            side = np.full(len(d), np.inf)
            for t in ((-b - sq) / (2 * a), (-b + sq) / (2 * a)):
                y = o[:, 1] + t * d[:, 1]
                ok = (disc >= 0) & (t > EPS) & (y >= self.y0) & (y <= self.y1)
                side = np.where(ok & (t < side), t, side)
            for yc in (self.y0, self.y1):
                t = (yc - o[:, 1]) / d[:, 1]
                r2 = (ox + t * d[:, 0]) ** 2 + (oz + t * d[:, 2]) ** 2
                ok = (t > EPS) & (r2 <= self.radius**2)
                side = np.where(ok & (t < side), t, side)
        return side

    def surface(self, p: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rx, rz = p[:, 0] - self.x, p[:, 2] - self.z
        on_cap = (np.abs(p[:, 1] - self.y0) < 1e-6) | (np.abs(p[:, 1] - self.y1) < 1e-6)
        on_cap &= rx**2 + rz**2 < (self.radius * 0.999) ** 2
        n = np.stack([rx, np.zeros_like(rx), rz], -1) / self.radius
        n[on_cap] = [0.0, 1.0, 0.0]
        uv = np.stack([np.arctan2(rx, rz) * self.radius, p[:, 1]], -1)
        uv[on_cap] = np.stack([rx, rz], -1)[on_cap]
        return _facing(n, d), uv


Primitive = Plane | Box | Sphere | Cylinder
Selector = Callable[[Primitive], "np.ndarray | None"]


def screen_selector(cam: Camera, height: int, width: int) -> Selector:
    """Primary-ray culling: the row-major pixel indices inside a primitive's projected bounds.

    Returns None (test every ray) for unbounded primitives or ones reaching behind the camera.
    """

    def select(prim: Primitive) -> np.ndarray | None:
        if not hasattr(prim, "corners"):
            return None
        pc = (prim.corners() - cam.origin) @ cam.rot
        if np.any(pc[:, 2] <= 1e-3):
            return None
        u = cam.fx * pc[:, 0] / pc[:, 2] + cam.cx - 0.5
        v = cam.fy * pc[:, 1] / pc[:, 2] + cam.cy - 0.5
        j0, j1 = max(math.floor(u.min()), 0), min(math.ceil(u.max()), width - 1)
        i0, i1 = max(math.floor(v.min()), 0), min(math.ceil(v.max()), height - 1)
        if j0 > j1 or i0 > i1:
            return np.empty(0, dtype=np.int64)
        rows, cols = np.arange(i0, i1 + 1), np.arange(j0, j1 + 1)
        return (rows[:, None] * width + cols[None]).ravel()

    return select


def parallel_selector(points: np.ndarray, direction: np.ndarray) -> Selector:
    """Culling for parallel rays (sunlight) from ``points`` (N, 3) along unit ``direction``."""
    a = np.cross(direction, [0.0, 1.0, 0.0] if abs(direction[1]) < 0.9 else [1.0, 0.0, 0.0])
    a /= np.linalg.norm(a)
    basis = np.stack([a, np.cross(direction, a), direction], 1)
    proj = points @ basis

    def select(prim: Primitive) -> np.ndarray | None:
        if not hasattr(prim, "corners"):
            return None
        pc = prim.corners() @ basis
        lo, hi = pc.min(0), pc.max(0)
        inside = (proj[:, 0] >= lo[0]) & (proj[:, 0] <= hi[0]) & (proj[:, 1] >= lo[1])
        inside &= (proj[:, 1] <= hi[1]) & (proj[:, 2] <= hi[2])
        return np.flatnonzero(inside)

    return select


def cast(prims: list[Primitive], o: np.ndarray, d: np.ndarray,
         select: Selector | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Nearest hit: ``t`` (N,) (inf on a miss) and the index of the primitive hit (N,) (-1).

    ``select(prim)`` may narrow the rays tested against a primitive (indices), None for all.
    """
    best = np.full(len(d), np.inf)
    hit = np.full(len(d), -1, dtype=np.int64)
    for k, prim in enumerate(prims):
        idx = select(prim) if select is not None else None
        if idx is None:
            idx = slice(None)
        elif len(idx) == 0:
            continue
        t = prim.intersect(o if np.ndim(o) == 1 else o[idx], d[idx])
        cur = best[idx]
        closer = t < cur
        best[idx] = np.where(closer, t, cur)
        hit[idx] = np.where(closer, k, hit[idx])
    return best, hit


def occluded(prims: list[Primitive], o: np.ndarray, d: np.ndarray, dist: np.ndarray,
             select: Selector | None = None) -> np.ndarray:
    """Whether anything lies between ``o`` (N, 3) and ``o + dist * d`` (unit ``d``) (N,)."""
    blocked = np.zeros(len(d), dtype=bool)
    for prim in prims:
        idx = select(prim) if select is not None else None
        if idx is None:
            idx = slice(None)
        elif len(idx) == 0:
            continue
        blocked[idx] |= prim.intersect(o[idx], d[idx]) < dist[idx]
    return blocked
