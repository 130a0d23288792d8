"""Test clips made here: phone-style clips (a moving crop of a photo) and synthetic ones.

``phone_clip`` writes what phones record: HEVC (or H.264) in a ``.mov``, a display-matrix
rotation, and optionally variable frame rate (irregular timestamps), all with PyAV.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

EXAMPLES = Path(__file__).resolve().parents[2] / "assets" / "examples"
PHOTO = EXAMPLES / "monodepth2_test_image.jpg"
TIME_BASE = Fraction(1, 600)


def moving_crops(photo: Path = PHOTO, frames: int = 24, size: tuple[int, int] = (320, 192),
                 zoom: float = 0.15) -> np.ndarray:
    """(T, h, w, 3) uint8 for ``size`` (w, h): a crop that pans right and zooms in."""
    im = np.asarray(Image.open(photo).convert("RGB"))
    h, w = im.shape[:2]
    aspect = size[0] / size[1]
    full_w = min(w * 0.6, h * 0.95 * aspect)  # the largest crop that fits, with room to pan
    out = []
    for i in range(frames):
        f = i / max(frames - 1, 1)
        cw = int(full_w * (1 - zoom * f))
        ch = int(cw / aspect)
        x0 = int((w - cw) * (0.2 + 0.6 * f))
        y0 = int((h - ch) * 0.5)
        crop = Image.fromarray(im[y0:y0 + ch, x0:x0 + cw]).resize(size, Image.BILINEAR)
        out.append(np.asarray(crop))
    return np.stack(out)


def write_clip(path: Path, frames: np.ndarray, *, codec: str = "libx265", fps: float = 30.0,
               rotation: int = 0, vfr: bool = False, seed: int = 0) -> list[float]:
    """Write ``frames`` (T, H, W, 3) to ``path``; returns the timestamps (s) written.

    ``rotation``: display rotation in degrees (counter-clockwise, as phones store it);
    ``vfr``: frame intervals drawn between 0.5 and 1.5 times ``1 / fps``.
    """
    import av

    rng = np.random.default_rng(seed)
    gaps = rng.uniform(0.5, 1.5, len(frames)) / fps if vfr else np.full(len(frames), 1 / fps)
    times = np.concatenate([[0.0], np.cumsum(gaps[:-1])])
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = TIME_BASE
        if codec == "libx265":
            stream.options = {"x265-params": "log-level=error"}
        if rotation:
            stream.set_display_rotation(rotation)
        for rgb, t in zip(frames, times, strict=True):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            frame.pts, frame.time_base = round(t / TIME_BASE), TIME_BASE
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return [float(t) for t in times]


def phone_clip(path: Path, frames: int = 24, *, rotation: int = -90, vfr: bool = True,
               codec: str = "libx265") -> Path:
    """A phone-style ``.mov``: a moving crop of the example photo, HEVC, VFR; with a rotation
    the scene is stored sideways (as a phone sensor records it) and shows upright (portrait
    192x320 for -90 / 90) once the rotation is applied."""
    portrait = rotation % 180 != 0
    crops = moving_crops(frames=frames, size=(192, 320) if portrait else (320, 192))
    stored = np.ascontiguousarray(np.rot90(crops, k=-(rotation // 90), axes=(1, 2)))
    write_clip(path, stored, codec=codec, rotation=rotation, vfr=vfr)
    return path
