"""The bad-input corpus: generated (seeded) files and values, each with the outcome every surface
must give it. Nothing binary is committed; builders write into a folder at test time.

A :class:`Case` has an ``id``, a ``kind`` (which input it is: image, filename, stereo, calib,
depth, eval, anchors, export-path, text, archive), a ``build(folder)`` that writes the input and
returns it (a path, a dict of paths, or a value), and the expected outcome: :class:`Refused`
(a one-sentence error containing ``needle``; nothing stored changes) or :class:`Handled`
(it works, and ``shape`` / ``check`` say what the output must be). ``overrides`` give a different
outcome on one surface, deliberately (e.g. ``..`` is refused in a web export name but is a plain
relative path on the command line). ``surfaces`` limits where a case can be sent (a folder
cannot be uploaded).

The image, filename, stereo and calib cases are here; depth, eval, anchors, export-path, text and
archive cases are in :mod:`tests.badinput.corpus_review`; :data:`ALL_CASES` holds both.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

SURFACES = frozenset({"api", "cli", "web"})
H, W = 48, 64
"""Size of the ordinary test photo (rows, columns)."""


@dataclass(frozen=True)
class Refused:
    """One sentence containing ``needle`` (case-insensitive), and nothing stored changes."""

    needle: str


@dataclass(frozen=True)
class Handled:
    """It works: the output depth is ``shape`` (H, W) when given; ``check(value)`` gets the
    surface's output (the decoded RGB for images, the stored value for text)."""

    shape: tuple[int, int] | None = None
    check: Callable[[Any], None] | None = None


Outcome = Refused | Handled


@dataclass(frozen=True)
class Case:
    id: str
    kind: str
    build: Callable[[Path], Any]
    expect: Outcome
    surfaces: frozenset[str] = SURFACES
    overrides: dict[str, Outcome] = field(default_factory=dict)
    note: str = ""

    def outcome(self, *keys: str) -> Outcome:
        """The outcome on a surface: the first override among ``keys`` (most specific first,
        e.g. ``("compare", "web")``), else ``expect``."""
        return next((self.overrides[k] for k in keys if k in self.overrides), self.expect)

    def __repr__(self) -> str:  # pytest ids
        return self.id


# ------------------------------------------------------------------------------ pixels
def photo(seed: int = 0, h: int = H, w: int = W) -> np.ndarray:
    """A seeded smooth RGB uint8 (h, w, 3) picture (coarse random colours, bilinear)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(coarse).resize((w, h), Image.BILINEAR))


def encode(im: Image.Image | np.ndarray, fmt: str, **kw) -> bytes:
    im = Image.fromarray(im) if isinstance(im, np.ndarray) else im
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims ``width`` x ``height`` RGB with (almost) no pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr)
            + _chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + _chunk(b"IEND", b""))


def jpeg_claiming(width: int, height: int) -> bytes:
    """A small real JPEG whose SOF0 header is patched to claim ``width`` x ``height``."""
    data = bytearray(encode(photo(3), "JPEG", quality=80))
    at = data.index(b"\xff\xc0") + 5  # marker, length (2), precision (1), then height, width
    data[at:at + 4] = struct.pack(">HH", height, width)
    return bytes(data)


def writer(name: str, data: Callable[[], bytes]) -> Callable[[Path], Path]:
    """A builder writing ``data()`` to ``folder/name`` (``name`` may be bytes-like str)."""

    def build(folder: Path) -> Path:
        path = folder / name
        path.write_bytes(data())
        return path

    return build


def fs_name(raw: bytes) -> str:
    """A file name from raw bytes (non-UTF-8 bytes kept as surrogates, as os.listdir does)."""
    return os.fsdecode(raw)


# ------------------------------------------------------------------------------ checks
def _stretched_16bit(rgb: np.ndarray) -> None:
    # the 16-bit ramp 1000..5000 is stretched to the full 0..255, left to right, not clipped
    gray = rgb[..., 0].astype(int)
    assert (rgb[..., 0] == rgb[..., 1]).all() and gray.min() == 0 and gray.max() == 255
    assert (np.diff(gray[0]) >= 0).all() and gray[0, 0] == 0 and gray[0, -1] == 255


def _rgb48(rgb: np.ndarray) -> None:
    assert np.abs(rgb.astype(int) - photo(5)).max() <= 1  # the high byte of each channel


def _cmyk(rgb: np.ndarray) -> None:
    assert np.abs(rgb.astype(int) - photo(6)).max() <= 8  # JPEG loss only, no inverted inks


def _alpha_on_white(rgb: np.ndarray) -> None:
    assert (rgb[:, W // 2:] == 255).all()  # the transparent half is white
    assert np.abs(rgb[:, :W // 2].astype(int) - photo(7)[:, :W // 2]).max() <= 1


def _exif_rotated(rgb: np.ndarray) -> None:
    # orientation 6: the stored picture turned 90 degrees clockwise for display
    assert rgb.shape == (W, H, 3)
    assert np.abs(rgb.astype(int) - np.rot90(photo(8), -1)).mean() < 6


def _gray(rgb: np.ndarray) -> None:
    assert (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()


def _first_frame(rgb: np.ndarray) -> None:
    assert (np.abs(rgb.astype(int) - (200, 30, 30)) <= 8).all()  # frame 0 is red


def _float_tiff(rgb: np.ndarray) -> None:
    assert rgb[..., 0].min() == 0 and rgb[..., 0].max() == 255  # min..max of the floats


def _rgba_png() -> bytes:
    rgba = np.dstack([photo(7), np.full((H, W), 255, np.uint8)])
    rgba[:, W // 2:, 3] = 0
    return encode(rgba, "PNG")


def _gif() -> bytes:
    frames = []
    for colour in ((200, 30, 30), (30, 200, 30), (30, 30, 200)):
        frame = Image.new("P", (W, H), 0)
        frame.putpalette([*colour, *([0] * 765)])
        frames.append(frame)
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    return buf.getvalue()


def _gray16() -> bytes:
    ramp = np.tile(np.linspace(1000, 5000, W), (H, 1)).astype(np.uint16)
    return encode(Image.fromarray(ramp), "PNG")


def _rgb48_png() -> bytes:
    import cv2

    ok, buf = cv2.imencode(".png", (photo(5).astype(np.uint16) * 257)[..., ::-1])
    assert ok
    return buf.tobytes()


def _exif_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(photo(8), "JPEG", quality=95, exif=exif.tobytes())


def _bad_crc_png() -> bytes:
    data = bytearray(encode(photo(9), "PNG"))
    data[29] ^= 0xFF  # the IHDR chunk's CRC
    return bytes(data)


def _bad_idat_png() -> bytes:
    data = bytearray(encode(photo(10), "PNG"))
    at = data.index(b"IDAT") + 8
    data[at:at + 16] = bytes(16)  # zlib stream destroyed, CRC left as it was
    return bytes(data)


def _cut(data: bytes, fraction: float = 0.6) -> bytes:
    return data[:int(len(data) * fraction)]


def _folder(folder: Path) -> Path:
    path = folder / "photos.jpg"
    path.mkdir()
    return path


SVG = b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="64" height="48">' \
      b'<rect width="64" height="48" fill="red"/></svg>\n'
NOT_IMAGE = Refused("not an image")
CORRUPT = Refused("truncated or corrupt")
LOCAL = frozenset({"api", "cli"})

IMAGE_CASES = [
    Case("zero-bytes", "image", writer("empty.jpg", lambda: b""), Refused("is empty")),
    Case("truncated-jpeg", "image", writer("cut.jpg", lambda: _cut(encode(photo(1), "JPEG"))),
         CORRUPT),
    Case("truncated-png", "image", writer("cut.png", lambda: _cut(encode(photo(2), "PNG"))),
         CORRUPT),
    Case("jpeg-soi-only", "image", writer("soi.jpg", lambda: b"\xff\xd8"), CORRUPT),
    Case("png-bad-crc", "image", writer("crc.png", _bad_crc_png), CORRUPT),
    Case("png-bad-idat", "image", writer("idat.png", _bad_idat_png), CORRUPT),
    Case("png-zero-size", "image", writer("zero.png", lambda: png_header_only(0, 0)), CORRUPT),
    Case("text-as-jpg", "image", writer("notes.jpg", lambda: b"shopping list: eggs\n" * 20),
         NOT_IMAGE),
    Case("html-as-png", "image",
         writer("page.png", lambda: b"<html><script>alert(1)</script></html>"), NOT_IMAGE),
    Case("svg", "image", writer("drawing.svg", lambda: SVG), Refused("SVG")),
    Case("svg-as-png", "image", writer("drawing.png", lambda: SVG), Refused("SVG")),
    Case("animated-gif", "image", writer("anim.gif", _gif), Handled((H, W), _first_frame)),
    Case("one-pixel", "image", writer("dot.png", lambda: encode(photo(11, 1, 1), "PNG")),
         Handled((1, 1)), overrides={"compare": Refused("constant map")},
         note="deliberate: a 1x1 photo gives a valid 1x1 depth map (comparing needs more)"),
    Case("header-bomb-png", "image", writer("bomb.png", lambda: png_header_only(20000, 20000)),
         Refused("the limit is")),
    Case("header-bomb-jpeg", "image", writer("bomb.jpg", lambda: jpeg_claiming(20000, 20000)),
         Refused("the limit is")),
    Case("gray-16bit", "image", writer("depthcam.png", _gray16), Handled((H, W), _stretched_16bit)),
    Case("rgb-48bit", "image", writer("deep.png", _rgb48_png), Handled((H, W), _rgb48)),
    Case("cmyk-jpeg", "image",
         writer("print.jpg", lambda: encode(Image.fromarray(photo(6)).convert("CMYK"), "JPEG",
                                            quality=95)), Handled((H, W), _cmyk)),
    Case("rgba-transparent", "image", writer("alpha.png", _rgba_png),
         Handled((H, W), _alpha_on_white)),
    Case("exif-rotated", "image", writer("rotated.jpg", _exif_jpeg),
         Handled((W, H), _exif_rotated)),
    Case("grayscale-jpeg", "image",
         writer("gray.jpg", lambda: encode(Image.fromarray(photo(12)).convert("L"), "JPEG")),
         Handled((H, W), _gray)),
    Case("aspect-20000x1", "image",
         writer("strip.png", lambda: encode(Image.new("RGB", (20000, 1), "gray"), "PNG")),
         Refused("aspect ratio")),
    Case("aspect-2x400", "image", writer("pole.png", lambda: encode(photo(13, 400, 2), "PNG")),
         Refused("aspect ratio")),
    Case("aspect-10-to-1", "image",
         writer("panorama.png", lambda: encode(photo(14, 16, 160), "PNG")), Handled((16, 160)),
         note="the largest aspect ratio accepted"),
    Case("bmp", "image", writer("old.bmp", lambda: encode(photo(15), "BMP")), Handled((H, W))),
    Case("webp", "image", writer("web.webp", lambda: encode(photo(16), "WEBP")),
         Handled((H, W))),
    Case("tiff-float32", "image",
         writer("float.tif", lambda: encode(Image.fromarray(photo(17)[..., 0].astype(np.float32)
                                                            / 7.0), "TIFF")),
         Handled((H, W), _float_tiff)),
    Case("folder-as-image", "image", _folder, Refused("is a folder"), surfaces=LOCAL,
         overrides={"import": Refused("no files to import")},
         note="import reads a folder as a folder of photos: this one holds none"),
    Case("missing-file", "image", lambda folder: folder / "nowhere.png",
         Refused("does not exist"), surfaces=LOCAL),
]

LONG_STEM = "l" + "o" * 248 + "ng"
FILENAME_CASES = [
    Case("name-non-utf8", "filename",
         writer(fs_name(b"caf\xe9.png"), lambda: encode(photo(20), "PNG")), Handled((H, W)),
         surfaces=LOCAL, note="the byte shows as \\xe9 in messages and as U+FFFD in the DB"),
    Case("name-non-utf8-bad", "filename",
         writer(fs_name(b"bad\xff.jpg"), lambda: b"not a jpeg"), NOT_IMAGE, surfaces=LOCAL),
    Case("name-newline-bad", "filename", writer("two\nlines.jpg", lambda: b"not a jpeg"),
         NOT_IMAGE, surfaces=LOCAL, note="the message stays on one line"),
    Case("name-unicode", "filename", writer("写真 ü €.png", lambda: encode(photo(21), "PNG")),
         Handled((H, W))),
    Case("name-250-chars", "filename",
         writer(LONG_STEM + ".png", lambda: encode(photo(22), "PNG")), Handled((H, W)),
         overrides={"cli": Refused("File name too long")},
         note="the CLI refuses (its outputs would exceed 255 bytes) and writes nothing"),
]


# ------------------------------------------------------------------------------ stereo
GOOD_CALIB = ("cam0=[60 0 32; 0 60 24; 0 0 1]\ncam1=[60 0 32; 0 60 24; 0 0 1]\ndoffs=0\n"
              "baseline=100\nwidth=64\nheight=48\nndisp=16\n")


def _pair(left: Callable[[], bytes], right: Callable[[], bytes],
          calib: str | bytes | None = GOOD_CALIB, names=("left.png", "right.png")):
    def build(folder: Path) -> dict:
        out = {"left": folder / names[0], "right": folder / names[1], "calib": None}
        out["left"].write_bytes(left())
        out["right"].write_bytes(right())
        if calib is not None:
            out["calib"] = folder / "calib.txt"
            out["calib"].write_bytes(calib.encode() if isinstance(calib, str) else calib)
        return out

    return build


def _shifted(seed: int, shift: int = 4, h: int = H, w: int = W, gray: bool = False):
    """A textured left view and the right view shifted by ``shift`` px (disparity)."""
    rng = np.random.default_rng(seed)
    wide = np.repeat(rng.integers(0, 256, (h, w + shift, 1), dtype=np.uint8), 3, axis=2)
    left, right = wide[:, shift:], wide[:, :w]
    enc = (lambda a: encode(Image.fromarray(a).convert("L"), "PNG")) if gray else \
        (lambda a: encode(a, "PNG"))
    return (lambda: encode(left, "PNG")), (lambda: enc(np.ascontiguousarray(right)))


_L, _R = _shifted(30)
_L1, _R1 = _shifted(31, shift=0, h=1, w=1)
_LG, _RG = _shifted(32, gray=True)
STEREO_CASES = [
    Case("stereo-size-mismatch", "stereo",
         _pair(_L, lambda: encode(photo(33, H, W - 4), "PNG")), Refused("same size")),
    Case("stereo-gray-and-rgb", "stereo", _pair(_LG, _RG), Handled((H, W))),
    Case("stereo-left-not-image", "stereo", _pair(lambda: b"left view, honest", _R), NOT_IMAGE),
    Case("stereo-right-truncated", "stereo",
         _pair(_L, lambda: _cut(encode(photo(34), "PNG"))), CORRUPT),
    Case("stereo-one-pixel", "stereo", _pair(_L1, _R1, calib=GOOD_CALIB.split("width")[0]),
         Handled((1, 1))),
]


def _calib(text: str | bytes):
    return _pair(_L, _R, calib=text)


CALIB_CASES = [
    Case("calib-empty", "calib", _calib(""), Refused("no cam0")),
    Case("calib-binary", "calib", _calib(bytes(range(256)) * 4), Refused("no cam0")),
    Case("calib-no-baseline", "calib", _calib(GOOD_CALIB.replace("baseline=100\n", "")),
         Refused("no baseline")),
    Case("calib-negative-baseline", "calib",
         _calib(GOOD_CALIB.replace("baseline=100", "baseline=-100")), Refused("positive")),
    Case("calib-nan-baseline", "calib",
         _calib(GOOD_CALIB.replace("baseline=100", "baseline=nan")), Refused("finite")),
    Case("calib-bad-matrix", "calib",
         _calib(GOOD_CALIB.replace("cam0=[60 0 32; 0 60 24; 0 0 1]", "cam0=[60 0; 0 60]")),
         Refused("3x3")),
    Case("calib-other-resolution", "calib",
         _calib(GOOD_CALIB.replace("width=64\nheight=48", "width=1920\nheight=1080")),
         Refused("describes 1920x1080")),
    Case("calib-absurd-ndisp", "calib", _calib(GOOD_CALIB.replace("ndisp=16", "ndisp=1e30")),
         Refused("ndisp")),
    Case("calib-negative-ndisp", "calib", _calib(GOOD_CALIB.replace("ndisp=16", "ndisp=-16")),
         Refused("ndisp")),
    Case("calib-ndisp-wider-than-image", "calib",
         _calib(GOOD_CALIB.replace("ndisp=16", "ndisp=256")), Refused("disparities")),
    Case("calib-latin1-comment", "calib",
         _calib(("# caméra gauche\n" + GOOD_CALIB).encode("latin-1")), Handled((H, W))),
]

IMAGE_LIKE = IMAGE_CASES + FILENAME_CASES


def all_cases() -> list[Case]:
    from tests.badinput.corpus_review import REVIEW_CASES

    return IMAGE_LIKE + STEREO_CASES + CALIB_CASES + REVIEW_CASES


def cases(kind: str | tuple[str, ...], surface: str) -> list[Case]:
    """The cases of ``kind`` that can be sent through ``surface``."""
    kinds = (kind,) if isinstance(kind, str) else kind
    return [c for c in all_cases() if c.kind in kinds and surface in c.surfaces]
