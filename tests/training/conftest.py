"""Fixtures of the training tests: a tiny export directory in the review-export format."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from depthweb.training.synthetic import render_scene


def write_export(root: Path, rows: list[dict], size: tuple[int, int] = (40, 56)) -> Path:
    """Write an export with one rendered scene per row; each row's keys override defaults.

    Labels: ``metric_depth`` rows get the exact depth, ``relative_disparity`` rows an affine map
    of 1 / depth. ``ignore_rows`` (a row key) marks that many top rows in the ignore mask.
    """
    for sub in ("images", "labels", "masks"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    lines = []
    for i, spec in enumerate(rows):
        frame = render_scene(100 + i, *size, outdoor=False)
        kind = spec.get("kind", "metric_depth")
        label = frame.depth.copy() if kind != "relative_disparity" else 3.0 / frame.depth + 1.0
        label[0, 0] = np.nan  # one invalid pixel
        Image.fromarray(frame.rgb).save(root / "images" / f"{i}.png")
        np.save(root / "labels" / f"{i}.npy", label.astype(np.float32))
        mask = None
        if spec.get("ignore_rows"):
            m = np.zeros(size, dtype=np.uint8)
            m[: spec["ignore_rows"]] = 255
            Image.fromarray(m).save(root / "masks" / f"{i}.png")
            mask = f"masks/{i}.png"
        row = {"image_id": i, "image": f"images/{i}.png", "label": f"labels/{i}.npy",
               "mask": mask, "kind": kind, "source": "ground_truth", "status": "approved",
               "weight": 1.0, "split": "train", "dataset": "test", "teacher": "tiny",
               "teacher_weights": "", "intrinsics": frame.intrinsics.as_dict()}
        row.update({k: v for k, v in spec.items() if k != "ignore_rows"})
        lines.append(json.dumps(row))
    (root / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture
def export_dir(tmp_path: Path) -> Path:
    """Six rows: ground truth, corrected, two pseudo (one masked), rejected, val, relative depth."""
    return write_export(tmp_path / "export", [
        {"source": "ground_truth", "weight": 1.0},
        {"source": "corrected", "kind": "relative_disparity", "weight": 2.0},
        {"source": "pseudo", "kind": "relative_disparity", "status": "unreviewed",
         "ignore_rows": 10, "weight": 0.5},
        {"source": "pseudo", "kind": "relative_disparity", "weight": 0.5},
        {"source": "pseudo", "status": "rejected"},
        {"source": "ground_truth", "split": "val"},
        {"source": "pseudo", "kind": "relative_depth"},
    ])
