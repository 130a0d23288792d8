"""Training samples from an export directory (reviewed labels) and from synthetic scenes.

Every sample is a dict of tensors at the training size (H, W):
``image`` float32 (3, H, W) in [0, 1]; ``target`` float32 (H, W) (disparity, or metres for a
metric target); ``valid`` bool (H, W); ``weight`` float32 (); ``pseudo`` bool () (pseudo-labels
get the trimmed loss and strong perturbations); ``augment`` bool () (colour jitter and blur
requested by the source); ``index`` int64 ().

Export rows (``manifest.jsonl``, see docs/dev/HELPERS.md): only the requested ``split``; rows
with ``status`` rejected never appear; the ignore mask (255) and NaN labels are invalid pixels.
Labels become disparity: ``relative_disparity`` as is, ``metric_depth`` as 1 / depth;
``relative_depth`` rows are skipped (their unknown shift does not survive the inversion). A metric
target takes ``metric_depth`` rows only. Images are resized to cover (H, W) and centre-cropped.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import ConcatDataset, Dataset

from depthweb.training.config import DataSource
from depthweb.training.synthetic import render_scene

log = logging.getLogger(__name__)

RENDER_VERSION = 3  # bump when synthetic.py changes what a seed renders (invalidates caches)
_USABLE = {"disparity": {"relative_disparity", "metric_depth"}, "metric": {"metric_depth"}}


def read_manifest(export_dir: str | Path) -> list[dict]:
    """The rows of ``<export_dir>/manifest.jsonl``."""
    path = Path(export_dir) / "manifest.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: is {export_dir} a training-set export?")
    with path.open() as fh:
        return [json.loads(line) for line in fh if line.strip()]


def fit_to_size(
    image: np.ndarray, label: np.ndarray, valid: np.ndarray, size: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Resize to cover ``size`` (aspect kept) and centre-crop.

    ``image`` uint8 (h, w, 3) (bilinear), ``label`` float32 (h, w) and ``valid`` bool (h, w)
    (nearest) -> image (3, H, W) in [0, 1], label (H, W), valid (H, W).
    """
    h, w = label.shape
    th, tw = size
    scale = max(th / h, tw / w)
    rh, rw = max(th, round(h * scale)), max(tw, round(w * scale))
    img = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float() / 255.0
    lab = torch.from_numpy(np.where(valid, label, 0.0).astype(np.float32))[None, None]
    val = torch.from_numpy(valid.astype(np.float32))[None, None]
    if (rh, rw) != (h, w):
        img = F.interpolate(img, size=(rh, rw), mode="bilinear", align_corners=False,
                            antialias=True)
        lab = F.interpolate(lab, size=(rh, rw), mode="nearest")
        val = F.interpolate(val, size=(rh, rw), mode="nearest")
    y0, x0 = (rh - th) // 2, (rw - tw) // 2
    crop = (slice(None), slice(None), slice(y0, y0 + th), slice(x0, x0 + tw))
    return img[crop][0].clamp(0, 1), lab[crop][0, 0], val[crop][0, 0] > 0.5


def _sample(image: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, weight: float,
            pseudo: bool, index: int, augment: bool = False) -> dict[str, torch.Tensor]:
    return {"image": image, "target": target, "valid": valid,
            "weight": torch.tensor(weight, dtype=torch.float32),
            "pseudo": torch.tensor(pseudo), "augment": torch.tensor(augment),
            "index": torch.tensor(index)}


class ExportDataset(Dataset):
    """The usable rows of one export directory (see the module docstring)."""

    def __init__(self, root: str | Path, size: tuple[int, int], *, split: str = "train",
                 target: str = "disparity") -> None:
        self.root = Path(root)
        self.size = (int(size[0]), int(size[1]))
        self.target = target
        rows = read_manifest(self.root)
        usable = _USABLE[target]
        self.rows = [r for r in rows if r.get("split", "train") == split
                     and r.get("status") != "rejected" and r.get("kind") in usable]
        skipped = len([r for r in rows if r.get("split", "train") == split]) - len(self.rows)
        if skipped:
            log.warning("%s: skipped %d %s rows (rejected, or labels unusable for a %s target)",
                        self.root, skipped, split, target)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        from PIL import Image

        row = self.rows[i]
        image = np.array(Image.open(self.root / row["image"]).convert("RGB"))
        label = np.load(self.root / row["label"]).astype(np.float32)
        valid = np.isfinite(label)
        if row.get("mask"):
            valid &= np.asarray(Image.open(self.root / row["mask"])) < 128
        if row["kind"] == "metric_depth":
            valid &= label > 0
            if self.target == "disparity":
                label = np.divide(1.0, label, out=np.zeros_like(label), where=valid)
        if label.shape != image.shape[:2]:
            raise ValueError(f"{row['label']}: label {label.shape} does not match image "
                             f"{image.shape[:2]}")
        img, lab, val = fit_to_size(image, label, valid, self.size)
        weight = 1.0 if row.get("weight") is None else float(row["weight"])
        return _sample(img, lab, val, weight, row.get("source") == "pseudo", i)


def _render_chunk(args: tuple[int, list[int], int, int, float]) -> tuple[np.ndarray, np.ndarray]:
    seed, indices, h, w, outdoor_fraction = args
    frames = [render_scene([seed, i], h, w, outdoor_fraction=outdoor_fraction) for i in indices]
    return np.stack([f.rgb for f in frames]), np.stack([f.depth for f in frames])


class SyntheticDataset(Dataset):
    """``count`` rendered scenes; scene ``i`` is seeded by ``(seed, i)``. Frames are rendered on
    first use (or all at once by :meth:`prerender`) and kept in memory."""

    def __init__(self, count: int, size: tuple[int, int], *, seed: int = 0,
                 outdoor_fraction: float = 0.5, target: str = "disparity",
                 cache_dir: str | Path | None = None, augment: bool = False) -> None:
        self.count, self.size, self.seed = int(count), (int(size[0]), int(size[1])), int(seed)
        self.outdoor_fraction, self.target = float(outdoor_fraction), target
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.augment = bool(augment)
        self._rgb: np.ndarray | None = None
        self._depth: np.ndarray | None = None
        self._frames: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return self.count

    @property
    def cache_file(self) -> Path | None:
        if self.cache_dir is None:
            return None
        h, w = self.size
        name = (f"synthetic_v{RENDER_VERSION}_n{self.count}_{h}x{w}_s{self.seed}"
                f"_o{self.outdoor_fraction:g}.npz")
        return self.cache_dir / name

    def prerender(self, workers: int = 1) -> None:
        """Render every frame now (in ``workers`` processes), or load them from the cache."""
        cache = self.cache_file
        if cache is not None and cache.is_file():
            with np.load(cache) as data:
                self._rgb, self._depth = data["rgb"], data["depth"]
            return
        h, w = self.size
        n_chunks = max(1, min(self.count, workers * 8))
        chunks = [(self.seed, list(c), h, w, self.outdoor_fraction)
                  for c in np.array_split(np.arange(self.count), n_chunks) if len(c)]
        if workers > 1:
            with multiprocessing.get_context("spawn").Pool(workers) as pool:
                parts = pool.map(_render_chunk, chunks)
        else:
            parts = [_render_chunk(c) for c in chunks]
        self._rgb = np.concatenate([p[0] for p in parts])
        self._depth = np.concatenate([p[1] for p in parts])
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_suffix(".tmp.npz")
            np.savez(tmp, rgb=self._rgb, depth=self._depth)
            tmp.replace(cache)

    def frame(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """RGB uint8 (H, W, 3) and depth float32 (H, W) (inf = sky) of scene ``i``."""
        if self._rgb is not None and self._depth is not None:
            return self._rgb[i], self._depth[i]
        if i not in self._frames:
            f = render_scene([self.seed, i], *self.size, outdoor_fraction=self.outdoor_fraction)
            self._frames[i] = (f.rgb, f.depth)
        return self._frames[i]

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        rgb, depth = self.frame(i)
        finite = np.isfinite(depth) & (depth > 0)
        if self.target == "disparity":
            target = np.divide(1.0, depth, out=np.zeros_like(depth), where=finite)
            valid = np.ones_like(finite)  # the sky's disparity, 0, is exact too
        else:
            target, valid = np.where(finite, depth, 0.0).astype(np.float32), finite
        image = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float() / 255.0
        return _sample(image, torch.from_numpy(target), torch.from_numpy(valid), 1.0, False, i,
                       self.augment)


def build_dataset(sources: list[DataSource], size: tuple[int, int], target: str = "disparity",
                  workers: int = 1) -> ConcatDataset:
    """All sources of a config as one dataset (synthetic ones prerendered)."""
    parts: list[Dataset] = []
    for src in sources:
        if src.type == "export":
            parts.append(ExportDataset(src.path, size, split=src.split, target=target))
        else:
            syn = SyntheticDataset(src.count, size, seed=src.seed, target=target,
                                   outdoor_fraction=src.outdoor_fraction, cache_dir=src.cache_dir,
                                   augment=src.augment)
            syn.prerender(workers)
            parts.append(syn)
    if not any(len(p) for p in parts):
        raise ValueError("the training data is empty: no usable rows in any source")
    return ConcatDataset(parts)
