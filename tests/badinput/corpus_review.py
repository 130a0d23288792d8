"""The review-side half of the corpus: ground-truth depth files, evaluation folders, anchors,
export names, notes and dataset names, archives (see :mod:`tests.badinput.corpus`)."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from tests.badinput.corpus import (
    CORRUPT,
    LOCAL,
    Case,
    Handled,
    Refused,
    encode,
    photo,
    writer,
)

GT_IMAGE = "scene.png"
GT_H, GT_W = 48, 64
MARKER = "UNPICKLED"
"""A pickled object that is ever loaded creates a folder of this name next to its file."""


def _depth(seed: int = 0) -> np.ndarray:
    """A plausible metric depth map (GT_H, GT_W) in metres: a ramp from 1 to 5 m."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(1.0, 5.0, GT_H)[:, None] * np.ones((1, GT_W))
    return (ramp + rng.uniform(0, 0.01, ramp.shape)).astype(np.float32)


def _npy(arr: np.ndarray, name: str = "scene.npy", **kw):
    def build(folder: Path) -> Path:
        path = folder / name
        np.save(path, arr, **kw)
        return path

    return build


def _with(fn) -> np.ndarray:
    arr = _depth(1).astype(np.float64)
    fn(arr)
    return arr


class _Evil:
    """Unpickling this creates ``MARKER`` (a proof that a pickle was loaded)."""

    def __init__(self, folder: Path) -> None:
        self.path = str(folder / MARKER)

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def _pickled(folder: Path) -> Path:
    path = folder / "scene.npy"
    np.save(path, np.array([_Evil(folder)], dtype=object), allow_pickle=True)
    return path


def _truncated_npy(folder: Path) -> Path:
    path = _npy(_depth(5))(folder)
    path.write_bytes(path.read_bytes()[:-100])
    return path


def _header_bomb(folder: Path) -> Path:
    """A .npy whose header claims 100000 x 100000 float64 (80 GB) with 16 bytes of data."""
    path = folder / "scene.npy"
    with path.open("wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": "<f8", "fortran_order": False,
                                                  "shape": (100000, 100000)})
        fh.write(bytes(16))
    return path


def _png16(values: np.ndarray, name: str = "scene.png", mode: str | None = None):
    return writer(name, lambda: encode(Image.fromarray(values, mode) if mode else
                                       Image.fromarray(values), "PNG"))


def _nan_patch(arr: np.ndarray) -> None:
    arr[:10, :10] = np.nan


def _check_nan_patch(depth: np.ndarray) -> None:
    assert depth.dtype == np.float32 and np.isnan(depth[:10, :10]).all()
    assert np.isfinite(depth[10:]).all() and np.allclose(depth[10:], _depth(1)[10:])


_MM = (_depth(2) * 1000).astype(np.uint16)
_MM[:, :5] = 0


def _check_mm(depth: np.ndarray) -> None:
    assert np.isnan(depth[:, :5]).all()
    assert np.allclose(depth[:, 5:], _MM[:, 5:] * 0.001, atol=1e-6)


DEPTH_NEEDLE = Refused("save the depth in metres")
DEPTH_CASES = [
    Case("gt-nan-partial", "depth", _npy(_with(_nan_patch)),
         Handled((GT_H, GT_W), _check_nan_patch),
         note="NaN = no measurement; the rest is stored exactly"),
    Case("gt-png16-millimetres", "depth", _png16(_MM), Handled((GT_H, GT_W), _check_mm)),
    Case("gt-float16-fortran", "depth", _npy(np.asfortranarray(_depth(3).astype(np.float16))),
         Handled((GT_H, GT_W), lambda d: np.testing.assert_allclose(
             d, _depth(3).astype(np.float16), rtol=1e-3))),
    Case("gt-plus-inf", "depth", _npy(_with(lambda a: a.__setitem__((0, 0), np.inf))),
         Refused("infinite")),
    Case("gt-minus-inf", "depth", _npy(_with(lambda a: a.__setitem__((5, 5), -np.inf))),
         Refused("infinite")),
    Case("gt-negative", "depth", _npy(_with(lambda a: a.__setitem__((1, 1), -0.5))),
         Refused("negative")),
    Case("gt-all-nan", "depth", _npy(np.full((GT_H, GT_W), np.nan, np.float32)),
         Refused("no valid depth")),
    Case("gt-all-zero-png", "depth", _png16(np.zeros((GT_H, GT_W), np.uint16)),
         Refused("no valid depth")),
    Case("gt-absurd-values", "depth", _npy(_with(lambda a: a.__setitem__((2, 2), 1e30))),
         Refused("over the")),
    Case("gt-wrong-shape", "depth", _npy(_depth(4).T.copy()), Refused("image's size")),
    Case("gt-3d-array", "depth", _npy(np.ones((GT_H, GT_W, 3), np.float32)),
         Refused("image's size")),
    Case("gt-int64", "depth", _npy(np.ones((GT_H, GT_W), np.int64)), DEPTH_NEEDLE),
    Case("gt-bool", "depth", _npy(np.ones((GT_H, GT_W), bool)), DEPTH_NEEDLE),
    Case("gt-complex", "depth", _npy(np.ones((GT_H, GT_W), np.complex64)), DEPTH_NEEDLE),
    Case("gt-text-dtype", "depth", _npy(np.full((GT_H, GT_W), "1.5")), DEPTH_NEEDLE),
    Case("gt-structured", "depth",
         _npy(np.zeros((GT_H, GT_W), dtype=[("z", "f4"), ("c", "f4")])), DEPTH_NEEDLE),
    Case("gt-object-pickle", "depth", _pickled, Refused("never loaded"),
         note="allow_pickle is never used: the MARKER folder must not appear"),
    Case("gt-truncated-npy", "depth", _truncated_npy, Refused("truncated")),
    Case("gt-header-bomb", "depth", _header_bomb, Refused("image's size"),
         note="refused from the header: nothing is allocated"),
    Case("gt-text-as-npy", "depth", writer("scene.npy", lambda: b"1.0 2.0 3.0\n"),
         Refused("not a readable .npy")),
    Case("gt-empty", "depth", writer("scene.npy", lambda: b""), Refused("empty")),
    Case("gt-png-8bit", "depth", _png16(np.full((GT_H, GT_W), 7, np.uint8)),
         Refused("not 16-bit")),
    Case("gt-png-rgb", "depth", writer("scene.png", lambda: encode(photo(41), "PNG")),
         Refused("not 16-bit")),
    Case("gt-png-truncated", "depth",
         writer("scene.png", lambda: encode(Image.fromarray(_MM), "PNG")[:200]),
         Refused("not a readable 16-bit PNG")),
    Case("gt-unmatched-name", "depth", _npy(_depth(6), "elsewhere.npy"),
         Refused("matches no image")),
]


# ------------------------------------------------------------------------------ eval folders
def _eval_folder(pixels: np.ndarray | bytes | None = None, files=None, **entry_overrides):
    def build(folder: Path) -> Path:
        root = folder / "nyu_case"
        (root / "rgb").mkdir(parents=True)
        (root / "depth").mkdir()
        Image.fromarray(photo(50, GT_H, GT_W)).save(root / "rgb" / "f0.png")
        d = (_depth(7) * 1000).astype(np.uint16) if pixels is None else pixels
        if isinstance(d, bytes):
            (root / "depth" / "f0.png").write_bytes(d)
        else:
            Image.fromarray(d).save(root / "depth" / "f0.png")
        entry = {"cam_in": [60.0, 60.0, 32.0, 24.0], "rgb": "rgb/f0.png",
                 "depth": "depth/f0.png", "depth_scale": 1000.0, **entry_overrides}
        listed = [entry] if files is None else files
        (root / "test_annotations.json").write_text(json.dumps({"files": listed}))
        return root

    return build


def _eval(case_id: str, build, outcome) -> Case:
    return Case(case_id, "eval", build, outcome, surfaces=LOCAL)


EVAL_CASES = [
    _eval("eval-good", _eval_folder(), Handled()),
    _eval("eval-all-invalid-depth", _eval_folder(np.zeros((GT_H, GT_W), np.uint16)),
          Refused("no valid ground-truth depth")),
    _eval("eval-zero-depth-scale", _eval_folder(depth_scale=0), Refused("depth_scale")),
    _eval("eval-nan-intrinsics", _eval_folder(cam_in=[float("nan"), 60, 32, 24]),
          Refused("cam_in")),
    _eval("eval-truncated-depth", _eval_folder(encode(Image.fromarray(_MM), "PNG")[:100]),
          Refused("not a readable evaluation folder")),
    _eval("eval-path-traversal", _eval_folder(depth="../../../../etc/hostname"),
          Refused("relative path inside")),
    _eval("eval-files-not-a-list", _eval_folder(files=7), Refused("one object per frame")),
    _eval("eval-wrong-depth-size", _eval_folder(np.ones((10, 10), np.uint16)),
          Refused("!= image")),
]


# ------------------------------------------------------------------------------ anchors
def _value(v):
    return lambda _folder: v


STUDIO_ANCHOR_CASES = [
    Case("anchors-valid", "anchors", _value("[[20, 30, 2.5]]"), Handled()),
    Case("anchors-nan-column", "anchors", _value("[[NaN, 10, 2.0]]"), Refused("finite")),
    Case("anchors-inf-depth", "anchors", _value("[[10, 10, Infinity]]"),
         Refused("positive depth")),
    Case("anchors-negative-depth", "anchors", _value("[[10, 10, -2]]"),
         Refused("positive depth")),
    Case("anchors-outside-image", "anchors", _value("[[5000, 10, 2]]"), Refused("outside")),
    Case("anchors-not-json", "anchors", _value("[[1, 2"), Refused("JSON like")),
    Case("anchors-too-many", "anchors",
         _value(json.dumps([[i % 60, i % 40, 1.0 + i / 100] for i in range(1001)])),
         Refused("at most 1000")),
]
REVIEW_ANCHOR_CASES = [
    # Two anchors: one cannot fix a disparity label's scale and shift (geometry tests).
    Case("review-anchors-valid", "review-anchors", _value([[20, 30, 2.5], [40, 10, 3.0]]),
         Handled()),
    Case("review-anchors-nan", "review-anchors", _value([[float("nan"), 10, 2.0]]),
         Refused("needs 3 numbers")),
    Case("review-anchors-inf-depth", "review-anchors", _value([[10, 10, float("inf")]]),
         Refused("needs 3 numbers")),
    Case("review-anchors-negative", "review-anchors", _value([[10, 10, -2.0]]),
         Refused("positive")),
    Case("review-anchors-outside", "review-anchors", _value([[5000, 10, 2.0], [20, 30, 2.5]]),
         Refused("outside")),
    Case("review-anchors-text", "review-anchors", _value([["ten", 10, 2.0]]),
         Refused("not all numbers")),
    Case("review-anchors-none", "review-anchors", _value([]), Refused("at least one")),
]


# ------------------------------------------------------------------------------ export names
EXPORT_CASES = [
    Case("export-good-name", "export-path", _value("fine-name"), Handled()),
    Case("export-dotdot", "export-path", _value("../outside"), Refused("'..'"),
         overrides={"cli": Handled()}, note="a relative path on the command line is the user's"),
    Case("export-nested-dotdot", "export-path", _value("a/../../b"), Refused("'..'"),
         overrides={"cli": Handled()}),
    Case("export-absolute", "export-path", _value("/tmp/depthweb-elsewhere"),
         Refused("inside"), surfaces=frozenset({"api", "web"})),
    Case("export-empty-name", "export-path", _value(""), Refused("name the export folder"),
         surfaces=frozenset({"api", "web"})),
    Case("export-nul-byte", "export-path", _value("a\x00b"), Refused("NUL byte"),
         surfaces=frozenset({"api", "web"})),
    Case("export-name-too-long", "export-path", _value("x" * 300), Refused("too long")),
    Case("export-into-blob-store", "export-path", _value("<data>/blobs/x"),
         Refused("blob store"), surfaces=frozenset({"cli"})),
    Case("export-onto-a-file", "export-path", _value("<file>"), Refused("not a folder"),
         surfaces=frozenset({"cli"})),
    Case("export-non-empty-folder", "export-path", _value("<full>"),
         Refused("already holds files"), surfaces=frozenset({"cli"})),
]


# ------------------------------------------------------------------------------ text
HTML = "<script>alert('x')</script><img src=x onerror=alert(1)> & \"quotes\" </textarea>"
WEB_AND_API = frozenset({"api", "web"})
NOTE_CASES = [
    Case("note-10000-chars", "note", _value("n" * 10_000), Refused("4000 characters"),
         surfaces=WEB_AND_API),
    Case("note-4000-chars", "note", _value("é" * 4000), Handled(), surfaces=WEB_AND_API,
         note="the limit itself is stored verbatim"),
    Case("note-html-script", "note", _value(HTML), Handled(), surfaces=WEB_AND_API),
    Case("note-unicode-controls", "note", _value("‮right-to-left 🎉 zero\u200bwidth\ttab"),
         Handled(), surfaces=WEB_AND_API),
    Case("note-blank", "note", _value(" \n\t "), Refused("empty"), surfaces=WEB_AND_API),
    Case("approve-note-10000-chars", "approve-note", _value("a" * 10_000),
         Refused("4000 characters"), surfaces=WEB_AND_API,
         note="was silently cut to 4000 characters before"),
]
DATASET_CASES = [
    Case("dataset-html-script", "dataset-name", _value("<b>rooms</b><script>x()</script>"),
         Handled()),
    Case("dataset-10000-chars", "dataset-name", _value("d" * 10_000),
         Refused("1 to 128 characters")),
    Case("dataset-blank", "dataset-name", _value("   "), Refused("1 to 128 characters"),
         overrides={"web": Refused("name the dataset")}),
    Case("dataset-undecodable-byte", "dataset-name", _value("rooms\udcff"),
         Refused("not valid Unicode"), surfaces=LOCAL,
         note="a non-UTF-8 byte on the command line (JSON clients cannot even send it)"),
]


# ------------------------------------------------------------------------------ archives
def _zip(members: dict[str, bytes], name: str = "batch.zip", patch_sizes: bool = False):
    def build(folder: Path) -> Path:
        path = folder / name
        with zipfile.ZipFile(path, "w") as zf:
            for member, data in members.items():
                zf.writestr(member, data)
        if patch_sizes:  # every central-directory entry claims 4 GB uncompressed
            raw = bytearray(path.read_bytes())
            at = raw.find(b"PK\x01\x02")
            while at >= 0:
                raw[at + 24:at + 28] = (0xFFFFFFF0).to_bytes(4, "little")
                at = raw.find(b"PK\x01\x02", at + 4)
            path.write_bytes(bytes(raw))
        return path

    return build


def _empty_folder(folder: Path) -> Path:
    path = folder / "nothing-here"
    path.mkdir()
    return path


_OK = encode(photo(60), "PNG")
ARCHIVE_CASES = [
    Case("zip-empty", "archive", _zip({}), Refused("no files to import")),
    Case("zip-path-traversal", "archive",
         _zip({"../evil.png": encode(photo(61), "PNG"), "/abs/evil2.png": encode(photo(62),
                                                                                   "PNG"),
               "ok.png": _OK}), Refused("unsafe path"), note="ok.png is still imported"),
    Case("zip-corrupt", "archive", writer("broken.zip", lambda: b"PK\x03\x04" + bytes(300)),
         Refused("not a readable zip")),
    Case("zip-size-bomb", "archive",
         _zip({"a.png": _OK, "b.png": encode(photo(63), "PNG")}, patch_sizes=True),
         Refused("limits are")),
    Case("zip-one-bad-member", "archive",
         _zip({"good.png": encode(photo(65), "PNG"), "bad.jpg": encode(photo(64), "JPEG")[:300]}),
         CORRUPT,
         note="good.png is still imported"),
    Case("folder-empty", "archive", _empty_folder, Refused("no files to import"),
         surfaces=LOCAL),
]
IMPORTED_ALONGSIDE = {"zip-path-traversal": "ok.png", "zip-one-bad-member": "good.png"}
"""Archive cases whose good member must still be imported."""

REVIEW_CASES = (DEPTH_CASES + EVAL_CASES + STUDIO_ANCHOR_CASES + REVIEW_ANCHOR_CASES
                + EXPORT_CASES + NOTE_CASES + DATASET_CASES + ARCHIVE_CASES)
