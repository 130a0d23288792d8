"""Safe image decoding: modes, EXIF orientation and focal, size limits, bad files."""

from __future__ import annotations

import io
import struct
import time
import zlib
from collections.abc import Callable

import numpy as np
import pytest
from PIL import Image

from depthweb.errors import InputError
from depthweb.imaging import LoadedImage, load_image

H, W = 12, 20
Builder = tuple[Image.Image, Callable[[np.ndarray], None]]


def _rng() -> np.random.Generator:
    return np.random.default_rng(7)


def _png_bytes(im: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def _check_rgb(out: LoadedImage, h: int = H, w: int = W) -> np.ndarray:
    assert out.rgb.dtype == np.uint8
    assert out.rgb.shape == (h, w, 3)
    assert out.rgb.flags["C_CONTIGUOUS"] and out.rgb.flags["WRITEABLE"]
    return out.rgb


# --- modes -------------------------------------------------------------------------------------


def _rgba() -> Builder:
    a = np.zeros((H, W, 4), np.uint8)
    a[..., 0] = 200
    a[:, : W // 2, 3] = 255  # left half opaque red-ish, right half fully transparent
    def check(rgb):
        assert (rgb[:, : W // 2] == [200, 0, 0]).all()
        assert (rgb[:, W // 2 :] == 255).all()  # composited on white
    return Image.fromarray(a), check


def _la() -> Builder:
    a = np.zeros((H, W, 2), np.uint8)
    a[..., 0] = 40
    a[:, : W // 2, 1] = 255
    a[:, W // 2 :, 1] = 0
    def check(rgb):
        assert (rgb[:, : W // 2] == 40).all()
        assert (rgb[:, W // 2 :] == 255).all()
    return Image.fromarray(a), check


def _p() -> Builder:
    im = Image.new("P", (W, H))
    im.putpalette([10, 20, 30, 250, 0, 0] + [0] * 762)
    idx = np.zeros((H, W), np.uint8)
    idx[:, W // 2 :] = 1
    im.putdata(idx.ravel().tolist())
    def check(rgb):
        assert (rgb[:, : W // 2] == [10, 20, 30]).all()
        assert (rgb[:, W // 2 :] == [250, 0, 0]).all()
    return im, check


def _p_transparent() -> Builder:
    im, _ = _p()
    im.info["transparency"] = 1
    def check(rgb):
        assert (rgb[:, : W // 2] == [10, 20, 30]).all()
        assert (rgb[:, W // 2 :] == 255).all()
    return im, check


def _cmyk() -> Builder:
    a = np.zeros((H, W, 4), np.uint8)
    a[:, W // 2 :, 3] = 255  # right half full black ink
    def check(rgb):
        assert (rgb[:, : W // 2] == 255).all()
        assert (rgb[:, W // 2 :] == 0).all()
    return Image.frombytes("CMYK", (W, H), a.tobytes()), check


def _i16() -> Builder:
    vals = np.linspace(1000, 4000, H * W).reshape(H, W).astype(np.uint16)
    def check(rgb):
        # stretched over the actual range, not clipped at 255
        assert rgb[0, 0, 0] == 0 and rgb[-1, -1, 0] == 255
        assert (rgb[..., 0] == rgb[..., 2]).all()
        assert len(np.unique(rgb)) > 100
    return Image.fromarray(vals), check


def _float() -> Builder:
    vals = np.linspace(-2.0, 3.0, H * W, dtype=np.float32).reshape(H, W)
    def check(rgb):
        assert rgb[0, 0, 0] == 0 and rgb[-1, -1, 0] == 255
    return Image.fromarray(vals), check


def _l() -> Builder:
    vals = _rng().integers(0, 256, (H, W), dtype=np.uint8)
    def check(rgb):
        assert (rgb == vals[..., None]).all()
    return Image.fromarray(vals), check


def _one() -> Builder:
    vals = np.zeros((H, W), np.uint8)
    vals[:, W // 2 :] = 255
    def check(rgb):
        assert (rgb[:, : W // 2] == 0).all() and (rgb[:, W // 2 :] == 255).all()
    return Image.fromarray(vals).convert("1"), check


def _ycbcr() -> Builder:
    rgb_in = _rng().integers(0, 256, (H, W, 3), dtype=np.uint8)
    im = Image.fromarray(rgb_in).convert("YCbCr")
    def check(rgb):
        assert np.abs(rgb.astype(int) - rgb_in.astype(int)).max() <= 3
    return im, check


MODES = {
    "RGBA": _rgba, "LA": _la, "P": _p, "P+transparency": _p_transparent, "CMYK": _cmyk,
    "I;16": _i16, "F": _float, "L": _l, "1": _one, "YCbCr": _ycbcr,
}


@pytest.mark.parametrize("mode", list(MODES))
def test_modes_from_pil(mode):
    im, check = MODES[mode]()
    out = load_image(im, name="x")
    check(_check_rgb(out))
    assert out.original_mode == im.mode


@pytest.mark.parametrize(("mode", "fmt"), [("RGBA", "PNG"), ("LA", "PNG"), ("P", "PNG"),
                                           ("P+transparency", "PNG"), ("CMYK", "TIFF"),
                                           ("I;16", "PNG"), ("L", "PNG"), ("1", "PNG")])
def test_modes_through_files(tmp_path, mode, fmt):
    im, check = MODES[mode]()
    path = tmp_path / f"img.{fmt.lower()}"
    im.save(path, fmt)
    out = load_image(path)
    check(_check_rgb(out))
    assert out.name == path.name


def test_i16_big_endian_and_int32():
    vals = (np.arange(H * W).reshape(H, W) * 200).astype(">u2")
    im = Image.frombytes("I;16B", (W, H), vals.tobytes())
    assert im.mode == "I;16B" and int(np.asarray(im).max()) == 200 * (H * W - 1)
    rgb = _check_rgb(load_image(im))
    assert rgb[0, 0, 0] == 0 and rgb[-1, -1, 0] == 255
    big = Image.fromarray(vals.astype(np.int32) * 1000)
    rgb2 = _check_rgb(load_image(big))
    np.testing.assert_array_equal(rgb, rgb2)


def test_animated_gif_first_frame(tmp_path):
    frames = [Image.new("RGB", (W, H), c) for c in [(255, 0, 0), (0, 0, 255)]]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    rgb = _check_rgb(load_image(path))
    assert rgb[..., 0].mean() > 200 and rgb[..., 2].mean() < 50


# --- EXIF --------------------------------------------------------------------------------------


def test_exif_orientation_6_swaps_dims(tmp_path):
    a = np.zeros((40, 80, 3), np.uint8)
    a[:, :40] = [255, 0, 0]  # stored: left half red
    exif = Image.Exif()
    exif[0x0112] = 6  # display = stored rotated 90 deg clockwise
    path = tmp_path / "rot.jpg"
    Image.fromarray(a).save(path, "JPEG", exif=exif, quality=95)
    out = load_image(path)
    rgb = _check_rgb(out, 80, 40)
    assert out.orientation_applied
    assert rgb[:30, :, 0].mean() > 200  # the stored left half is now on top
    assert rgb[50:, :, 0].mean() < 50


@pytest.mark.parametrize(("fmt", "side", "shape"), [
    # 1600x800 stored, shown rotated: the largest of 1/2, 1/4, 1/8 that keeps the longer side
    # at least ``side``
    ("JPEG", 700, (800, 400, 3)),
    ("JPEG", 300, (400, 200, 3)),
    ("JPEG", 90, (200, 100, 3)),
    ("JPEG", 900, (1600, 800, 3)),  # no reduction keeps 900
    ("PNG", 150, (1600, 800, 3)),  # only JPEG has a reduced decode
])
def test_preview_decodes_a_jpeg_at_reduced_scale_after_orientation(tmp_path, fmt, side, shape):
    a = np.zeros((800, 1600, 3), np.uint8)
    a[:, :800, 0] = 255  # stored: left half red
    a[:, :, 1] = np.linspace(0, 255, 1600).astype(np.uint8)  # and a ramp, left to right
    exif = Image.Exif()
    exif[0x0112] = 6  # display = stored rotated 90 deg clockwise
    path = tmp_path / f"big.{fmt.lower()}"
    Image.fromarray(a).save(path, fmt, exif=exif, **({"quality": 95} if fmt == "JPEG" else {}))
    out = load_image(path, preview_side=side)
    assert out.rgb.shape == shape and out.orientation_applied
    h = shape[0]
    assert out.rgb[: h // 2 - 8, :, 0].mean() > 200 and out.rgb[h // 2 + 8:, :, 0].mean() < 50
    full = load_image(path).rgb
    assert full.shape == (1600, 800, 3)
    # the same picture, smaller: the full decode shrunk to the preview's size matches it
    f = full.shape[0] // shape[0]
    shrunk = full.reshape(shape[0], f, shape[1], f, 3).mean(axis=(1, 3))
    assert np.abs(shrunk - out.rgb).mean() < 3.0


def test_no_orientation_not_applied(tmp_path):
    path = tmp_path / "plain.jpg"
    Image.new("RGB", (W, H), "white").save(path)
    out = load_image(path)
    assert not out.orientation_applied and out.exif_focal_35mm is None


@pytest.mark.parametrize(("value", "expected"), [(28, 28.0), (0, None)])
def test_exif_focal_35mm(value, expected):
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0xA405] = value
    data = _png_bytes(Image.new("RGB", (W, H), "gray"), "JPEG", exif=exif)
    assert load_image(data, name="cam.jpg").exif_focal_35mm == expected


# --- size limits -------------------------------------------------------------------------------


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(
            ">I", zlib.crc32(tag + body) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


@pytest.mark.parametrize(("w", "h", "expect"), [
    (20000, 20000, "400.0 MP"),  # beyond Pillow's own bomb limit
    (9000, 9000, "9000x9000 pixels (81.0 MP)"),  # below Pillow's limit, above ours
])
def test_header_only_bomb_rejected_fast(tmp_path, w, h, expect):
    path = tmp_path / "photo.png"
    path.write_bytes(_png_header_only(w, h))
    t0 = time.perf_counter()
    with pytest.raises(InputError) as err:
        load_image(path)
    assert time.perf_counter() - t0 < 1.0
    msg = str(err.value)
    assert msg.startswith("photo.png is ") and expect in msg
    assert "the limit is 50 MP: resize it first." in msg and "\n" not in msg


def test_max_pixels_argument_and_setting(tmp_path, monkeypatch):
    from depthweb.config import get_settings

    path = tmp_path / "small.png"
    Image.new("RGB", (100, 60), "white").save(path)
    with pytest.raises(InputError, match="100x60 pixels"):
        load_image(path, max_pixels=5999)
    assert load_image(path, max_pixels=6000).rgb.shape == (60, 100, 3)
    monkeypatch.setenv("DEPTHWEB_MAX_PIXELS", "5000")
    get_settings.cache_clear()
    with pytest.raises(InputError, match=r"the limit is 0\.005 MP"):
        load_image(path)


# --- bad files ---------------------------------------------------------------------------------


def _truncated(fmt: str) -> bytes:
    noise = _rng().integers(0, 256, (64, 64, 3), dtype=np.uint8)
    data = _png_bytes(Image.fromarray(noise), fmt)
    return data[: len(data) // 2]


@pytest.mark.parametrize(("fname", "content", "needle"), [
    ("cut.jpg", _truncated("JPEG"), "truncated or corrupt"),
    ("cut.png", _truncated("PNG"), "truncated or corrupt"),
    ("empty.jpg", b"", "empty (0 bytes)"),
    ("notes.jpg", b"hello, this is plain text\n" * 10, "not an image"),
    ("drawing.svg", b'<svg xmlns="http://www.w3.org/2000/svg"><rect/></svg>', "SVG"),
    ("drawing.png", b'<?xml version="1.0"?>\n<svg width="10"></svg>', "SVG"),
])
def test_bad_files_clear_error(tmp_path, fname, content, needle):
    path = tmp_path / fname
    path.write_bytes(content)
    for source, name in ((path, fname), (content, fname)):
        with pytest.raises(InputError) as err:
            load_image(source, name=name if isinstance(source, bytes) else None)
        msg = str(err.value)
        assert msg.startswith(fname) and needle in msg and "\n" not in msg


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(InputError, match=r"nope\.jpg does not exist"):
        load_image(tmp_path / "nope.jpg")
    with pytest.raises(InputError, match="is a folder"):
        load_image(tmp_path)


def test_bytes_default_name():
    with pytest.raises(InputError, match=r"^uploaded image is empty"):
        load_image(b"")
    out = load_image(_png_bytes(Image.new("RGB", (W, H), (1, 2, 3))))
    assert out.name == "uploaded image" and (out.rgb == [1, 2, 3]).all()
