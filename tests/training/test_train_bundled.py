"""The bundled offline student in assets/student: size, loading, and its published claim."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from depthweb.models.registry import load_backend
from depthweb.training.evaldata import load_eval_folder
from depthweb.training.evaluate import beats, evaluate_baselines, evaluate_folder
from depthweb.types import DepthKind

BUNDLED = Path(__file__).resolve().parents[2] / "assets" / "student"


@pytest.fixture
def bundled() -> Path:
    if not (BUNDLED / "model.safetensors").is_file():
        if os.environ.get("CI"):
            pytest.fail(f"bundled student missing at {BUNDLED}")
        pytest.skip("bundled student not trained yet (scripts/train_bundled_student.py)")
    return BUNDLED


def test_bundled_student_files_and_prediction(bundled):
    assert (bundled / "model.safetensors").stat().st_size <= 25 * 1024 * 1024
    cfg = json.loads((bundled / "config.json").read_text())
    assert cfg["model_type"] == "depthweb_student" and cfg["kind"] == "relative_disparity"
    assert "Reproduce" in (bundled / "README.md").read_text()
    backend = load_backend("depthweb-student", weights=bundled, device="cpu")
    rgb = np.random.default_rng(1).integers(0, 256, (90, 120, 3), dtype=np.uint8)
    res = backend.infer_image(rgb)
    assert res.kind is DepthKind.RELATIVE_DISPARITY and res.depth.shape == (90, 120)


@pytest.mark.parametrize("dataset", ["nyu", "kitti"])
def test_bundled_student_beats_trivial_baselines(bundled, shared_data, dataset):
    backend = load_backend("depthweb-student", weights=bundled, device="cpu")
    samples = load_eval_folder(shared_data / dataset, dataset)

    def predict(sample):
        res = backend.infer_image(sample.rgb, sample.intrinsics)
        return res.depth, res.kind

    student = evaluate_folder(samples, predict)
    assert beats(student, evaluate_baselines(samples)), student["mean"]
    published = json.loads((bundled / "eval.json").read_text())[dataset]["student"]["mean"]
    assert student["mean"]["abs_rel"] == pytest.approx(published["abs_rel"], abs=1e-4)
