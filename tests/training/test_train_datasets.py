"""Training samples from exports (rules of the export format) and from synthetic scenes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from depthweb.training.config import DataSource
from depthweb.training.datasets import (
    ExportDataset,
    SyntheticDataset,
    build_dataset,
    fit_to_size,
)


def test_export_dataset_keeps_usable_rows_only(export_dir):
    ds = ExportDataset(export_dir, (32, 48))
    # rejected, val and relative_depth rows are left out
    assert [r["source"] for r in ds.rows] == ["ground_truth", "corrected", "pseudo", "pseudo"]
    samples = [ds[i] for i in range(len(ds))]
    assert [bool(s["pseudo"]) for s in samples] == [False, False, True, True]
    assert [float(s["weight"]) for s in samples] == [1.0, 2.0, 0.5, 0.5]
    assert not any(bool(s["augment"]) for s in samples)
    for s in samples:
        assert s["image"].shape == (3, 32, 48) and s["target"].shape == (32, 48)
        assert s["valid"].dtype == torch.bool
    assert len(ExportDataset(export_dir, (32, 48), split="val")) == 1
    assert len(ExportDataset(export_dir, (32, 48), target="metric")) == 1


def test_export_dataset_honours_ignore_mask_and_converts_metric_to_disparity(export_dir):
    ds = ExportDataset(export_dir, (40, 56))  # the export's own size: no resampling
    masked = ds[2]
    assert not masked["valid"][:10].any() and masked["valid"][10:].all()
    gt = ds[0]
    depth = np.load(export_dir / "labels" / "0.npy")
    ok = gt["valid"].numpy()
    assert not ok[0, 0]  # the NaN pixel
    assert np.allclose(gt["target"].numpy()[ok], 1.0 / depth[ok], rtol=1e-6)


def test_fit_to_size_covers_and_centre_crops():
    image = np.zeros((20, 60, 3), dtype=np.uint8)
    label = np.tile(np.arange(60, dtype=np.float32), (20, 1))
    img, lab, val = fit_to_size(image, label, np.ones((20, 60), bool), (10, 10))
    assert img.shape == (3, 10, 10) and lab.shape == (10, 10) and val.all()
    assert 20 <= float(lab.mean()) <= 40  # the middle columns


def test_synthetic_dataset_is_seeded_and_cached(tmp_path):
    a = SyntheticDataset(3, (32, 48), seed=4, cache_dir=tmp_path)
    a.prerender()
    assert a.cache_file is not None and a.cache_file.is_file()
    b = SyntheticDataset(3, (32, 48), seed=4)
    assert torch.equal(a[2]["image"], b[2]["image"])
    assert torch.equal(a[2]["target"], b[2]["target"])
    s = a[1]
    assert s["valid"].all() and (s["target"] >= 0).all() and not bool(s["pseudo"])
    assert not bool(s["augment"])
    assert bool(SyntheticDataset(1, (32, 48), augment=True)[0]["augment"])


def test_build_dataset_concatenates_sources(export_dir):
    ds = build_dataset([DataSource("export", path=str(export_dir)),
                        DataSource("synthetic", count=2, seed=1)], (32, 48))
    assert len(ds) == 4 + 2
    with pytest.raises(FileNotFoundError):
        build_dataset([DataSource("export", path=str(export_dir / "missing"))], (32, 48))
