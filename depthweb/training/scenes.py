"""Random scene layouts for the synthetic renderer: furnished rooms and streets.

World frame: x right, y up, z forward (metres). ``indoor_scene`` and ``outdoor_scene`` draw
everything from the ``numpy`` generator they are given, so a seed fixes the scene.

Indoor: a room (floor, ceiling, four walls; 2.4-3.4 m high, up to 10 m deep) with furniture-like
boxes, spheres, poles and round tables, lit by a ceiling light. Outdoor: a ground plane with a
painted road, pavements and verges, rows of buildings with windows, trees, parked and moving
cars, poles, under a clear or overcast sky lit by the sun; the street runs along +z.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass

import numpy as np

from depthweb.training.raycast import (
    Box,
    Camera,
    Cylinder,
    Material,
    Plane,
    Primitive,
    Sphere,
    rotation,
)

PATTERNS = ("plain", "checker", "stripes", "noise", "gradient")


@dataclass
class Light:
    """A sun (``direction`` towards it) or a point light (``position``), plus sky ambient."""

    intensity: float
    ambient: float
    direction: np.ndarray | None = None
    position: np.ndarray | None = None


@dataclass
class Scene:
    """Everything to render: camera, primitives, light; ``overcast`` skies are flat grey."""

    camera: Camera
    prims: list[Primitive]
    light: Light
    outdoor: bool
    fog_distance: float = math.inf
    overcast: bool = False


def random_colour(rng: np.random.Generator) -> np.ndarray:
    """An RGB colour (3,) in [0, 1], mostly muted like real interiors and streets."""
    hue, sat, val = rng.uniform(), rng.beta(1.2, 3.0), rng.uniform(0.12, 0.95)
    return np.array(colorsys.hsv_to_rgb(hue, sat, val))


def random_material(rng: np.random.Generator, base: np.ndarray | None = None,
                    patterns: tuple[str, ...] = PATTERNS) -> Material:
    """A random two-colour material; ``base`` (3,) biases its hue."""
    a = random_colour(rng) if base is None else np.clip(base * rng.uniform(0.7, 1.3, 3), 0, 1)
    b = random_colour(rng) if rng.uniform() < 0.3 else a * rng.uniform(0.4, 1.6)
    return Material(str(rng.choice(patterns)), a, np.clip(b, 0.02, 1.0),
                    scale=float(rng.uniform(0.1, 2.0)), angle=float(rng.uniform(0, math.pi)),
                    grain=float(rng.uniform(0.0, 0.3)), noise=rng.uniform(0, 1, (16, 16)))


def _camera(rng: np.random.Generator, height: int, width: int, vfov: tuple[float, float],
            pose: tuple[float, float, float], origin: np.ndarray) -> Camera:
    fy = 0.5 * height / math.tan(math.radians(rng.uniform(*vfov)) / 2)
    fx = fy * rng.uniform(0.97, 1.03)
    cx = width / 2 + rng.normal(0, width * 0.01)
    cy = height / 2 + rng.normal(0, height * 0.02)
    return Camera(fx, fy, cx, cy, rotation(*pose), origin)


def _inside(p: np.ndarray, prim: Primitive, margin: float) -> bool:
    """Whether point ``p`` lies within ``margin`` metres of a solid primitive (approximate)."""
    if isinstance(prim, Box):
        c, s = math.cos(prim.yaw), math.sin(prim.yaw)
        lp = (p - prim.center) @ np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
        return bool(np.all(np.abs(lp) <= prim.half + margin))
    if isinstance(prim, Sphere):
        return bool(np.linalg.norm(p - prim.center) <= prim.radius + margin)
    if isinstance(prim, Cylinder):
        r = math.hypot(p[0] - prim.x, p[2] - prim.z)
        return r <= prim.radius + margin and prim.y0 - margin <= p[1] <= prim.y1 + margin
    return False


def _room(rng: np.random.Generator) -> tuple[list[Primitive], np.ndarray]:
    """Floor, ceiling and four walls (convex: the first exit is the visible surface)."""
    half = np.array([rng.uniform(1.5, 4.0), rng.uniform(2.4, 3.4), rng.uniform(1.5, 5.0)])
    half[1] /= 2.0
    wall = random_material(rng)
    prims: list[Primitive] = [
        Plane(np.array([0.0, 1.0, 0.0]), 0.0, random_material(rng)),
        Plane(np.array([0.0, 1.0, 0.0]), 2 * half[1], random_material(rng, patterns=("plain",
                                                                                     "noise"))),
    ]
    for axis in (0, 2):
        for sign in (-1.0, 1.0):
            n = np.zeros(3)
            n[axis] = 1.0
            mat = wall if rng.uniform() < 0.6 else random_material(rng)
            prims.append(Plane(n, sign * half[axis], mat))
    return prims, half


def _furniture(rng: np.random.Generator, half: np.ndarray) -> list[Primitive]:
    """Boxes (some against walls, some stacked), spheres, poles and round tables in a room."""
    prims: list[Primitive] = []
    for _ in range(rng.integers(2, 10)):
        size = np.array([rng.uniform(0.3, 2.0), rng.uniform(0.3, 2.2), rng.uniform(0.3, 1.0)]) / 2
        size[1] = min(size[1], half[1] * 0.9)
        if rng.uniform() < 0.5:  # against a wall, facing into the room
            axis, sign = int(rng.integers(0, 2)) * 2, float(rng.choice([-1.0, 1.0]))
            pos = rng.uniform(-1, 1, 3) * half
            yaw = 0.0 if axis == 2 else math.pi / 2
            pos[axis] = sign * (half[axis] - size[2])
        else:
            pos, yaw = rng.uniform(-0.8, 0.8, 3) * half, float(rng.uniform(0, math.pi))
        pos[1] = size[1]
        prims.append(Box(pos, size, yaw, random_material(rng)))
        if rng.uniform() < 0.25:  # something on top
            top = size * rng.uniform(0.3, 0.8, 3)
            lift = np.array([0.0, size[1] + top[1], 0.0])
            prims.append(Box(pos + lift, top, yaw, random_material(rng)))
    for _ in range(rng.integers(0, 4)):  # shelves and wall cabinets
        axis, sign = int(rng.integers(0, 2)) * 2, float(rng.choice([-1.0, 1.0]))
        size = np.array([rng.uniform(0.4, 1.5), rng.uniform(0.02, 0.4), rng.uniform(0.12, 0.25)])
        pos = rng.uniform(-0.9, 0.9, 3) * half
        pos[1] = rng.uniform(0.5, 2 * half[1] - 0.3)
        pos[axis] = sign * (half[axis] - size[2])
        prims.append(Box(pos, size, 0.0 if axis == 2 else math.pi / 2, random_material(rng)))
    for _ in range(rng.integers(0, 4)):
        r = rng.uniform(0.1, 0.5)
        c = rng.uniform(-0.8, 0.8, 3) * half
        c[1] = r
        prims.append(Sphere(c, r, random_material(rng)))
    for _ in range(rng.integers(0, 4)):
        x, z = rng.uniform(-0.9, 0.9, 2) * half[[0, 2]]
        if rng.uniform() < 0.4:  # a pole from floor to ceiling
            prims.append(Cylinder(x, z, rng.uniform(0.04, 0.15), 0.0, 2 * half[1],
                                  random_material(rng)))
        else:
            prims.append(Cylinder(x, z, rng.uniform(0.15, 0.6), 0.0, rng.uniform(0.3, 1.1),
                                  random_material(rng)))
    return prims


def _eye(rng: np.random.Generator, half: np.ndarray, objects: list[Primitive]
         ) -> tuple[np.ndarray, float]:
    """A free eye position in the room and a yaw: towards the middle of the room, anywhere, or
    (40 %) from beside a wall looking along it, so that wall recedes in perspective."""
    beside = rng.uniform() < 0.4
    axis, sign = int(rng.integers(0, 2)) * 2, float(rng.choice([-1.0, 1.0]))
    for _ in range(50):
        eye = rng.uniform(-0.85, 0.85, 3) * half
        eye[1] = rng.uniform(0.9, min(1.9, 2 * half[1] - 0.3))
        if beside:
            eye[axis] = sign * max(half[axis] - rng.uniform(0.4, 1.5), 0.0)
        if not any(_inside(eye, p, 0.3) for p in objects):
            break
    if beside:
        other = 2 - axis
        ahead = -1.0 if eye[other] > 0 else 1.0  # look along the wall, into the room
        base = (0.0 if ahead > 0 else math.pi) if axis == 0 else ahead * math.pi / 2
        turn = rng.uniform(0.1, 0.6) * (-sign * ahead if axis == 0 else sign * ahead)
        return eye, base + turn
    if rng.uniform() < 0.7:
        return eye, math.atan2(-eye[0], -eye[2]) + rng.normal(0, 0.5)
    return eye, rng.uniform(-math.pi, math.pi)


def indoor_scene(rng: np.random.Generator, height: int, width: int) -> Scene:
    """A furnished room seen from a standing or sitting eye height."""
    room, half = _room(rng)
    objects = _furniture(rng, half)
    eye, yaw = _eye(rng, half, objects)
    objects = [p for p in objects if not _inside(eye, p, 0.3)]
    pose = (yaw, float(np.clip(rng.normal(-0.15, 0.15), -0.6, 0.2)), rng.normal(0, 0.03))
    cam = _camera(rng, height, width, (40.0, 65.0), pose, eye)
    lamp = np.array([rng.uniform(-0.7, 0.7) * half[0], 2 * half[1] - 0.05,
                     rng.uniform(-0.7, 0.7) * half[2]])
    light = Light(intensity=rng.uniform(0.6, 1.2), ambient=rng.uniform(0.2, 0.45), position=lamp)
    return Scene(cam, room + objects, light, outdoor=False)


def _noise_material(rng: np.random.Generator, a: np.ndarray, b: np.ndarray, scale: float,
                    grain: float = 0.2) -> Material:
    return Material("noise", a, b, scale=scale, grain=grain, noise=rng.uniform(0, 1, (16, 16)))


def _road(rng: np.random.Generator, half: float) -> Material:
    """Asphalt with white (sometimes yellow) lane paint; ``half`` the road's half width."""
    grey = rng.uniform(0.18, 0.6) * np.clip(1 + rng.normal(0, 0.04, 3), 0.8, 1.2)
    paint = np.array([0.95, 0.95, 0.92]) if rng.uniform() < 0.85 else np.array([0.95, 0.8, 0.3])
    return Material("road", np.clip(grey, 0, 1), paint, scale=1.0,
                    grain=rng.uniform(0.1, 0.4), noise=rng.uniform(0, 1, (16, 16)),
                    param=half, feature=0.4, mean=0.06)


def _verge(rng: np.random.Generator) -> Material:
    """Grass, gravel or rails beside the road."""
    kind = rng.uniform()
    if kind < 0.45:
        green = np.array([0.25, 0.4, 0.12]) * rng.uniform(0.6, 1.4)
        return _noise_material(rng, np.clip(green, 0, 1), np.clip(green * 0.6, 0, 1), 0.5, 0.4)
    grey = np.full(3, rng.uniform(0.3, 0.6)) * np.array([1.0, 0.95, 0.9])
    if kind < 0.75:
        return _noise_material(rng, grey, grey * 0.6, rng.uniform(0.1, 0.4), 0.5)
    return Material("stripes", grey, grey * 0.4, scale=rng.uniform(0.5, 1.5), angle=math.pi / 2,
                    grain=0.4, noise=rng.uniform(0, 1, (16, 16)))


def _tree(rng: np.random.Generator, x: float, z: float) -> list[Primitive]:
    trunk = rng.uniform(1.5, 4.0)
    bark = _noise_material(rng, np.array([0.25, 0.18, 0.1]), np.array([0.4, 0.3, 0.2]), 0.5)
    leaf = np.array([0.18, 0.38, 0.1]) * rng.uniform(0.5, 1.5, 3)
    foliage = _noise_material(rng, np.clip(leaf, 0, 1), np.clip(leaf * 0.4, 0, 1),
                              rng.uniform(0.3, 1.0), 0.5)
    prims: list[Primitive] = [Cylinder(x, z, rng.uniform(0.12, 0.4), 0.0, trunk, bark)]
    crown = rng.uniform(1.2, 3.5)
    for k in range(int(rng.integers(1, 4))):
        offset = rng.normal(0, crown * 0.35, 3) if k else np.zeros(3)
        r = crown * (rng.uniform(0.6, 0.9) if k else 1.0)
        prims.append(Sphere(np.array([x, trunk + crown * 0.8, z]) + offset, r, foliage))
    return prims


def _building(rng: np.random.Generator, x_face: float, sign: float, z: float,
              length: float) -> Box:
    depth, h = rng.uniform(6, 15), rng.uniform(3, 22)
    if rng.uniform() < 0.6:
        wall = random_colour(rng)
        glass = np.clip(np.array([0.15, 0.18, 0.22]) * rng.uniform(0.6, 2.0), 0, 1)
        mat = Material("windows", wall, glass, scale=rng.uniform(1.5, 4.0),
                       grain=rng.uniform(0.05, 0.3), noise=rng.uniform(0, 1, (16, 16)),
                       mean=0.3)
    else:
        mat = random_material(rng, patterns=("checker", "stripes", "noise", "plain"))
    return Box(np.array([x_face + sign * depth / 2, h / 2, z + length / 2]),
               np.array([depth / 2, h / 2, length / 2]), 0.0, mat)


def _street_side(rng: np.random.Generator, sign: float, road_half: float) -> list[Primitive]:
    """Pavement, verge, buildings, trees, poles and parked cars along one side (x = sign)."""
    walk = rng.uniform(1.5, 4.0)
    verge = rng.uniform(0.0, 6.0) if rng.uniform() < 0.6 else 0.0
    kerb = road_half + walk / 2
    prims: list[Primitive] = [Box(np.array([sign * kerb, 0.06, 100.0]),
                                  np.array([walk / 2, 0.06, 130.0]), 0.0, random_material(rng))]
    if verge > 0:
        prims.append(Box(np.array([sign * (road_half + walk + verge / 2), 0.04, 100.0]),
                         np.array([verge / 2, 0.04, 130.0]), 0.0, _verge(rng)))
    face = road_half + walk + verge + rng.uniform(0.0, 4.0)
    z = rng.uniform(-15, 0)
    while z < 180 and rng.uniform() < 0.95 and rng.uniform() < 0.85 + 0.15 * (verge == 0):
        length = rng.uniform(5, 30)
        if rng.uniform() < 0.8:
            prims.append(_building(rng, sign * face, sign, z, length))
        z += length + (rng.uniform(0, 12) if rng.uniform() < 0.3 else 0.0)
    if rng.uniform() < 0.7:  # a row of trees
        z, gap = rng.uniform(0, 8), rng.uniform(4, 14)
        x = sign * (road_half + rng.uniform(0.5, walk + verge + 1.0))
        while z < 120:
            prims.extend(_tree(rng, x + rng.normal(0, 0.3), z))
            z += gap * rng.uniform(0.7, 1.3)
    if rng.uniform() < 0.5:  # parked cars
        z = rng.uniform(2, 10)
        while z < 80:
            if rng.uniform() < 0.75:
                prims.extend(_car(rng, sign * (road_half - 1.1), z))
            z += rng.uniform(5.0, 9.0)
    for _ in range(rng.integers(0, 6)):  # poles
        prims.append(Cylinder(sign * (road_half + rng.uniform(0.2, walk)), rng.uniform(0, 80),
                              rng.uniform(0.05, 0.2), 0.0, rng.uniform(3, 9), random_material(rng)))
    return prims


def _car(rng: np.random.Generator, x: float, z: float) -> list[Primitive]:
    body = random_material(rng, patterns=("plain", "gradient"))
    yaw = rng.normal(0, 0.05)
    length, width = rng.uniform(3.8, 5.0), rng.uniform(1.6, 1.9)
    low = Box(np.array([x, 0.75, z]), np.array([width / 2, 0.45, length / 2]), yaw, body)
    cab = Box(np.array([x, 1.45, z - 0.2]), np.array([width / 2 * 0.9, 0.3, length / 4]), yaw,
              Material("plain", np.array([0.1, 0.12, 0.15]), np.array([0.1, 0.12, 0.15])))
    return [low, cab]


def outdoor_scene(rng: np.random.Generator, height: int, width: int) -> Scene:
    """A street (sometimes an open field) under the sun, seen from a car or a pedestrian."""
    road_half = rng.uniform(3.0, 10.0)
    street = rng.uniform() < 0.85
    ground = (_road(rng, road_half) if street and rng.uniform() < 0.85 else
              random_material(rng, base=np.full(3, rng.uniform(0.2, 0.6))))
    prims: list[Primitive] = [Plane(np.array([0.0, 1.0, 0.0]), 0.0, ground)]
    if street:
        for sign in (-1.0, 1.0):
            prims.extend(_street_side(rng, sign, road_half))
    else:
        for _ in range(rng.integers(0, 12)):
            prims.extend(_tree(rng, rng.uniform(-40, 40), rng.uniform(5, 120)))
    for _ in range(rng.integers(0, 7)):
        prims.extend(_car(rng, rng.uniform(-road_half + 1, road_half - 1), rng.uniform(4, 70)))
    for _ in range(rng.integers(0, 4)):  # clutter: boxes, rocks
        s = rng.uniform(0.3, 2.0)
        c = np.array([rng.uniform(-25, 25), s / 2, rng.uniform(4, 60)])
        prim = (Box(c, np.full(3, s / 2), rng.uniform(0, 3), random_material(rng))
                if rng.uniform() < 0.5 else Sphere(c, s / 2, random_material(rng)))
        prims.append(prim)
    eye = np.array([rng.uniform(-0.6, 0.6) * road_half, rng.uniform(1.2, 2.2), 0.0])
    prims = [p for p in prims if not _inside(eye, p, 0.5)]
    pose = (rng.normal(0, 0.12), rng.normal(-0.02, 0.04), rng.normal(0, 0.015))
    cam = _camera(rng, height, width, (25.0, 60.0), pose, eye)
    elev, azim = rng.uniform(0.25, 1.2), rng.uniform(-math.pi, math.pi)
    sun = np.array([math.cos(elev) * math.sin(azim), math.sin(elev),
                    math.cos(elev) * math.cos(azim)])
    overcast = bool(rng.uniform() < 0.3)
    light = Light(intensity=rng.uniform(0.7, 1.1) * (0.3 if overcast else 1.0),
                  ambient=rng.uniform(0.25, 0.5) * (1.6 if overcast else 1.0), direction=sun)
    return Scene(cam, prims, light, outdoor=True, fog_distance=rng.uniform(300, 1500),
                 overcast=overcast)
