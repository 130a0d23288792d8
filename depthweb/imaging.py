"""Safe image decoding: size limits before pixels, EXIF orientation and focal, every common mode.

:func:`load_image` turns a path, raw bytes or a PIL image into a uint8 RGB array:

- The pixel count is checked from the header (``Image.open`` is lazy) *before* any pixel is
  decoded; larger images are refused with an :class:`~depthweb.errors.InputError`. Pillow's own
  decompression-bomb guard (``DecompressionBombError``) is turned into the same kind of error, and
  its warning is silenced because our limit is checked right after.
- EXIF orientation is applied, and ``FocalLengthIn35mmFilm`` (tag 0xA405 in the Exif IFD) is read.
- Transparent images (RGBA, LA, PA, P with a transparent colour) are composited on **white**, so
  a transparent PNG looks the way viewers show it instead of revealing arbitrary hidden colours.
- 16-bit and 32-bit grayscale (I;16, I;16B, I, F) is stretched from its actual min..max to 0..255
  (a plain ``convert("L")`` would clip everything above 255 to white).
- Animated GIF/APNG/WebP: the first frame.
- Aspect ratios beyond :data:`MAX_ASPECT_RATIO` (e.g. a 20000x1 strip) are refused from the header
  too: the models resize the shorter side to their input size, so such a strip would become
  gigabytes of activations.

Unreadable, empty, truncated, vector (SVG) or non-image inputs raise ``InputError`` with one
sentence that names the file and the problem. A file that starts like a JPEG, PNG, GIF, WebP,
BMP or TIFF but cannot be decoded is reported as truncated or corrupt, not as an unknown format.
File names are shown with control characters escaped (:func:`display_name`), so a name with a
newline still gives a one-line message.
"""

from __future__ import annotations

import io
import logging
import math
import re
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from depthweb.config import get_settings
from depthweb.errors import InputError

log = logging.getLogger(__name__)

EXIF_IFD = 0x8769
TAG_ORIENTATION = 0x0112
TAG_FOCAL_35MM = 0xA405
WHITE = (255, 255, 255)

_ALPHA_MODES = {"RGBA", "RGBa", "LA", "La", "PA"}
_HIGH_DEPTH_MODES = {"I;16", "I;16B", "I;16L", "I;16N", "I", "F"}
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError)
MAX_ASPECT_RATIO = 10.0
"""Longer side / shorter side above this is refused (panoramas up to 10:1 are fine)."""
_SIGNATURES = (b"\xff\xd8", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM", b"II*\x00",
               b"MM\x00*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def display_name(name: str) -> str:
    """``name`` for a one-line message: control characters and undecodable bytes (the
    surrogates of a non-UTF-8 file name) escaped, e.g. ``"a\\nb.png"``, ``"caf\\xe9.png"``."""
    return _CONTROL.sub(_escape_char, name)


def _escape_char(m: re.Match) -> str:
    code = ord(m.group(0))
    if 0xDC80 <= code <= 0xDCFF:  # an undecodable byte kept by os.fsdecode (surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def check_dimensions(
    width: int, height: int, label: str, max_pixels: int | None = None,
    max_aspect: float | None = MAX_ASPECT_RATIO,
) -> None:
    """Refuse empty images, more than ``max_pixels`` (default: settings) and aspect ratios
    beyond ``max_aspect`` (None: any), with one sentence naming ``label``."""
    limit = get_settings().max_pixels if max_pixels is None else int(max_pixels)
    if width <= 0 or height <= 0:
        raise InputError(f"{label} has no pixels ({width}x{height}).")
    if width * height > limit:
        raise InputError(
            f"{label} is {width}x{height} pixels ({width * height / 1e6:.1f} MP); "
            f"the limit is {limit / 1e6:g} MP: resize it first."
        )
    ratio = max(width, height) / min(width, height)
    if max_aspect is not None and ratio > max_aspect:
        raise InputError(
            f"{label} is {width}x{height} pixels, an aspect ratio of {ratio:.0f}:1; the limit "
            f"is {max_aspect:g}:1: crop it first."
        )


@dataclass(frozen=True)
class LoadedImage:
    """A decoded image.

    ``rgb``: uint8 (H, W, 3), C-contiguous, EXIF orientation already applied.
    ``exif_focal_35mm``: EXIF FocalLengthIn35mmFilm in mm when present and positive.
    ``original_mode``: the PIL mode before conversion (e.g. ``"I;16"``, ``"RGBA"``).
    """

    rgb: np.ndarray
    name: str
    exif_focal_35mm: float | None
    original_mode: str
    orientation_applied: bool

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])


def load_image(
    source: str | Path | bytes | Image.Image,
    *,
    max_pixels: int | None = None,
    name: str | None = None,
    max_aspect: float | None = MAX_ASPECT_RATIO,
    preview_side: int | None = None,
) -> LoadedImage:
    """Decode ``source`` into a :class:`LoadedImage` (uint8 RGB, (H, W, 3)).

    ``max_pixels`` defaults to ``get_settings().max_pixels``; ``name`` is used in error messages
    (defaults to the file name, or "uploaded image" for bytes); ``max_aspect`` is the longest
    side / shortest side accepted (None: any, for images already stored). ``preview_side``: a
    picture for display only, whose longer side need be no more than this: a JPEG is then
    decoded at 1/2, 1/4 or 1/8 scale (the DCT's own reduction, several times faster) while its
    longer side stays at least ``preview_side``; other formats decode at full size.
    """
    limit = get_settings().max_pixels if max_pixels is None else int(max_pixels)
    limits = (limit, max_aspect)
    if isinstance(source, Image.Image):
        label = display_name(name or Path(getattr(source, "filename", "") or "image").name)
        return _open_and_decode(source, label, limits, preview_side=preview_side)
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        label = display_name(name or "uploaded image")
        _check_content(data[:4096], label, len(data), suffix=Path(label).suffix)
        return _open_and_decode(io.BytesIO(data), label, limits, head=data[:16],
                                preview_side=preview_side)
    path = Path(source)
    label = display_name(name or path.name)
    if not path.exists():
        raise InputError(f"{label} does not exist: check the path.")
    if path.is_dir():
        raise InputError(f"{label} is a folder, not an image file.")
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            head = fh.read(4096)
    except OSError as exc:
        raise InputError(f"{label} cannot be read: {exc.strerror or exc}.") from exc
    _check_content(head, label, size, suffix=path.suffix)
    return _open_and_decode(path, label, limits, head=head[:16], preview_side=preview_side)


def _check_content(head: bytes, label: str, size: int, *, suffix: str) -> None:
    """Refuse empty files and vector graphics before handing bytes to Pillow."""
    if size == 0:
        raise InputError(f"{label} is empty (0 bytes): choose the file again or another one.")
    text = head.lstrip()[:4096].lower()
    is_svg = suffix.lower() in {".svg", ".svgz"} or text.startswith(b"<svg") or (
        (text.startswith(b"<?xml") or text.startswith(b"<!doctype")) and b"<svg" in text
    )
    if is_svg:
        raise InputError(
            f"{label} is an SVG vector drawing, not a photo: export it as PNG or JPEG first."
        )


def _bomb_message(label: str, exc: Exception, limit: int) -> str:
    effective = min(limit, 2 * (Image.MAX_IMAGE_PIXELS or limit))
    m = re.search(r"\((\d+) pixels\)", str(exc))
    size = f"{int(m.group(1)) / 1e6:.1f} MP" if m else "too large to decode safely"
    return f"{label} is {size}; the limit is {effective / 1e6:g} MP: resize it first."


def _open_and_decode(
    src: Path | io.BytesIO | Image.Image, label: str, limits: tuple[int, float | None],
    head: bytes = b"", preview_side: int | None = None,
) -> LoadedImage:
    """Open lazily (header only), then :func:`_decode`; Pillow errors become ``InputError``.

    ``head``: the first bytes of the file, to tell a corrupt image from a non-image."""
    try:
        with warnings.catch_warnings():
            # We check the pixel count ourselves right after the header is read. (The filter list
            # is process-wide in Python 3.11; the only filter added is this one ignore.)
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            if isinstance(src, Image.Image):
                return _decode(src, label, limits, preview_side)
            with Image.open(src) as im:
                return _decode(im, label, limits, preview_side)
    except Image.DecompressionBombError as exc:
        raise InputError(_bomb_message(label, exc, limits[0])) from exc
    except UnidentifiedImageError as exc:
        if head.startswith(_SIGNATURES) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP"):
            raise InputError(
                f"{label} is truncated or corrupt and cannot be decoded: re-export or re-upload "
                "it."
            ) from exc
        raise InputError(
            f"{label} is not an image in a format this app can read: "
            "upload a JPEG, PNG, WebP, TIFF, BMP or GIF file."
        ) from exc
    except _DECODE_ERRORS as exc:
        log.debug("decoding %s failed: %s", label, exc)
        raise InputError(
            f"{label} is truncated or corrupt and cannot be decoded: re-export or re-upload it."
        ) from exc


def _decode(im: Image.Image, label: str, limits: tuple[int, float | None],
            preview_side: int | None = None) -> LoadedImage:
    """Size check (header only), EXIF, first frame, orientation, mode conversion (a JPEG
    decoded at reduced scale for a preview, see :func:`load_image`)."""
    width, height = im.size
    check_dimensions(width, height, label, *limits)
    if getattr(im, "n_frames", 1) > 1:
        im.seek(0)
    if preview_side and im.format == "JPEG" and max(width, height) > 2 * preview_side:
        longer = max(width, height)  # the request keeps the longer side >= preview_side,
        im.draft(None, (math.ceil(preview_side * width / longer),  # whatever the orientation
                        math.ceil(preview_side * height / longer)))
    im.load()  # decode errors surface here; EXIF is read after (a PNG's eXIf may follow IDAT,
    # and a getexif() that hits a corrupt stream would otherwise leave a half-decoded image)
    exif = _read_exif(im, label)
    focal = _focal_35mm(exif)
    orientation = _as_int(exif.get(TAG_ORIENTATION)) if exif is not None else None
    original_mode = im.mode
    applied = False
    if orientation in range(2, 9):
        try:
            im = ImageOps.exif_transpose(im)
            applied = True
        except _DECODE_ERRORS as exc:
            log.warning("%s: EXIF orientation %s not applied: %s", label, orientation, exc)
    try:
        rgb = to_rgb_array(im)
    except NotImplementedError as exc:
        msg = f"{label} uses PIL mode {original_mode!r}, which is not supported."
        raise InputError(msg) from exc
    return LoadedImage(rgb, label, focal, original_mode, applied)


def _read_exif(im: Image.Image, label: str) -> Image.Exif | None:
    try:
        return im.getexif()
    except (*_DECODE_ERRORS, KeyError, TypeError) as exc:
        log.warning("%s: unreadable EXIF ignored: %s", label, exc)
        return None


def _as_int(value: object) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _focal_35mm(exif: Image.Exif | None) -> float | None:
    """EXIF FocalLengthIn35mmFilm (Exif IFD, or IFD0 as some writers put it), if positive."""
    if exif is None:
        return None
    try:
        value = exif.get_ifd(EXIF_IFD).get(TAG_FOCAL_35MM, exif.get(TAG_FOCAL_35MM))
    except (*_DECODE_ERRORS, KeyError, TypeError):
        return None
    if isinstance(value, (tuple, list)):
        value = value[0] if value else None
    try:
        f = float(value) if value is not None else None
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return f if f is not None and math.isfinite(f) and f > 0 else None


def to_rgb_array(im: Image.Image) -> np.ndarray:
    """Any PIL mode to uint8 (H, W, 3), C-contiguous (alpha composited on white).

    Raises ``NotImplementedError`` for a mode Pillow cannot convert to RGB.
    """
    mode = im.mode
    has_alpha = mode in _ALPHA_MODES or (mode == "P" and "transparency" in im.info)
    if has_alpha and mode != "RGBA":
        im = im.convert("RGBA")
    if im.mode == "RGBA":
        base = Image.new("RGBA", im.size, (*WHITE, 255))
        im = Image.alpha_composite(base, im)
    elif mode in _HIGH_DEPTH_MODES:
        gray = _stretch_to_uint8(np.asarray(im))
        return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))
    if im.mode != "RGB":
        try:
            im = im.convert("RGB")
        except ValueError as exc:
            raise NotImplementedError(f"no conversion from PIL mode {mode!r} to RGB") from exc
    return np.array(im, dtype=np.uint8, order="C")  # a writable copy


def _stretch_to_uint8(values: np.ndarray) -> np.ndarray:
    """(H, W) integers or floats -> uint8 (H, W), min..max of the finite values -> 0..255."""
    v = values.astype(np.float64)
    finite = np.isfinite(v)
    if not finite.any():
        return np.zeros(v.shape, dtype=np.uint8)
    lo, hi = float(v[finite].min()), float(v[finite].max())
    if hi <= lo:
        return np.zeros(v.shape, dtype=np.uint8)
    out = np.where(finite, (v - lo) * (255.0 / (hi - lo)), 0.0)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
