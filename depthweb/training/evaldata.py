"""Readers for evaluation folders in the layout of ``../shared/data/nyu`` and ``kitti``.

A folder holds ``rgb/*``, ``depth/*.png`` (uint16, metres = value / ``depth_scale``, 0 = no
measurement) and ``test_annotations.json``::

    {"files": [{"cam_in": [fx, fy, cx, cy], "rgb": "data/nyu_demo/rgb/rgb_00000.jpg",
                "depth": "data/nyu_demo/depth/sync_depth_00000.png", "depth_scale": 1000.0}]}

The paths inside are those of the repository the files came from; they are resolved against the
folder by their trailing components (``rgb/<name>``, ``depth/<name>``). ``depth_scale`` 1000 is
NYU (indoor: evaluated in the Eigen crop up to 10 m), 256 is KITTI (outdoor: every measured pixel
up to 80 m).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from depthweb.geometry.metrics import eigen_crop_mask
from depthweb.types import Intrinsics, IntrinsicsSource

PROTOCOLS = {
    "nyu": {"max_depth": 10.0, "crop": "eigen"},
    "kitti": {"max_depth": 80.0, "crop": "none"},
}


@dataclass(frozen=True)
class EvalSample:
    """One frame: ``rgb`` uint8 (H, W, 3); ``depth`` float32 (H, W) metres (0 = none);
    ``valid`` bool (H, W): measured, in range and inside the protocol's crop."""

    name: str
    rgb: np.ndarray
    depth: np.ndarray
    valid: np.ndarray
    intrinsics: Intrinsics
    dataset: str
    max_depth: float


def _resolve(root: Path, ref: str) -> Path:
    """The file ``ref`` names: ``root/<dir>/<name>``, ``root/<name>`` or ``root/<ref>``."""
    parts = Path(ref).parts
    for k in (2, 1, len(parts)):
        candidate = root.joinpath(*parts[-k:])
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{ref} (listed in {root / 'test_annotations.json'}) not found "
                            f"under {root}")


def guess_dataset(root: Path, depth_scale: float) -> str:
    """``nyu`` or ``kitti`` from the folder name, else from the depth scale."""
    name = root.name.lower()
    for known in PROTOCOLS:
        if known in name:
            return known
    return "nyu" if depth_scale >= 1000 else "kitti"


def checked_entries(files: Any) -> list[dict]:
    """The ``files`` of a ``test_annotations.json``, or ``ValueError`` naming what is wrong: a
    list of objects, each with ``cam_in`` = four finite numbers with positive focals, a finite
    positive ``depth_scale`` and relative ``rgb`` / ``depth`` paths inside the folder."""
    if not isinstance(files, list) or not all(isinstance(e, dict) for e in files):
        raise ValueError('test_annotations.json must hold {"files": [{...}, ...]}, one object '
                         "per frame")
    for i, entry in enumerate(files):
        cam, scale = entry.get("cam_in"), entry.get("depth_scale")
        if not (isinstance(cam, list) and len(cam) == 4 and all(_finite_number(v) for v in cam)
                and cam[0] > 0 and cam[1] > 0):
            raise ValueError(f"frame {i} needs cam_in = [fx, fy, cx, cy] with finite numbers "
                             f"and positive focal lengths (got {cam!r})")
        if not (_finite_number(scale) and scale > 0):
            raise ValueError(f"frame {i} needs a positive depth_scale (got {scale!r})")
        for key in ("rgb", "depth"):
            ref = entry.get(key)
            if not isinstance(ref, str) or Path(ref).is_absolute() or ".." in Path(ref).parts:
                raise ValueError(f"frame {i} {key} must be a relative path inside the folder "
                                 f"(got {ref!r})")
    return files


def _finite_number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def load_eval_folder(root: str | Path, dataset: str | None = None) -> list[EvalSample]:
    """Every frame of an evaluation folder, sorted by name; ``dataset`` nyu / kitti (guessed)."""
    from PIL import Image

    root = Path(root)
    ann_path = root / "test_annotations.json"
    if not ann_path.is_file():
        raise FileNotFoundError(f"{ann_path} not found: not an NYU/KITTI-style folder")
    entries = checked_entries(json.loads(ann_path.read_text(encoding="utf-8"))["files"])
    samples = []
    for entry in entries:
        scale = float(entry["depth_scale"])
        name = dataset or guess_dataset(root, scale)
        if name not in PROTOCOLS:
            raise ValueError(f"unknown evaluation protocol {name!r}; use nyu or kitti")
        max_depth = PROTOCOLS[name]["max_depth"]
        rgb = np.asarray(Image.open(_resolve(root, entry["rgb"])).convert("RGB"))
        raw = np.asarray(Image.open(_resolve(root, entry["depth"])))
        if raw.shape != rgb.shape[:2]:
            raise ValueError(f"{entry['depth']}: depth {raw.shape} != image {rgb.shape[:2]}")
        depth = raw.astype(np.float32) / scale
        valid = (raw > 0) & (depth > 1e-3) & (depth <= max_depth)
        if PROTOCOLS[name]["crop"] == "eigen":
            valid &= eigen_crop_mask(*depth.shape)
        fx, fy, cx, cy = (float(v) for v in entry["cam_in"])
        cam = Intrinsics(fx, fy, cx, cy, IntrinsicsSource.CALIB, f"{name} calibration")
        samples.append(EvalSample(Path(entry["rgb"]).stem, rgb, depth, valid, cam, name,
                                  max_depth))
    return sorted(samples, key=lambda s: s.name)
