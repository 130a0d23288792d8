"""`depthweb predict` and the Python API without a model name: the default, and saying which."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from depthweb.config import Settings
from depthweb.services.predict import BUNDLED_MODEL, predict_image, resolve_model

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args, **env) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **{k: str(v) for k, v in env.items()}}
    return subprocess.run([sys.executable, "-m", "depthweb", *map(str, args)],
                          capture_output=True, text=True, timeout=300, env=full_env, cwd=REPO)


def photo(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    path = tmp_path / "p.png"
    Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(path)
    return path


def test_cli_falls_back_to_the_bundled_student_and_says_so(tmp_path):
    out = tmp_path / "out"
    proc = run_cli("predict", photo(tmp_path), "-o", out, HF_HUB_OFFLINE=1,
                   HF_HUB_CACHE=tmp_path / "empty-cache")
    assert proc.returncode == 0, proc.stderr
    first = proc.stdout.splitlines()[0]
    assert first.startswith(f"model: {BUNDLED_MODEL} (bundled student; the configured default")
    assert "has no weights on this machine" in first
    assert (out / "p.npy").exists()


def test_cli_uses_the_configured_default_when_its_weights_are_here(tmp_path):
    proc = run_cli("predict", photo(tmp_path), "-o", tmp_path / "o", HF_HUB_OFFLINE=1,
                   HF_HUB_CACHE=tmp_path / "empty-cache", DEPTHWEB_DEFAULT_MODEL=BUNDLED_MODEL)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0].startswith(f"model: {BUNDLED_MODEL} (configured default")


def test_model_stays_required_where_a_choice_matters(tmp_path):
    for command in ("pseudo-label", "eval"):
        proc = run_cli(command, str(tmp_path))
        assert proc.returncode != 0 and "-m/--model" in proc.stderr, command


def test_python_api_defaults_and_names_the_model(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    settings = Settings(model_dir=tmp_path / "models")
    name, why = resolve_model(None, settings)
    assert name == BUNDLED_MODEL and "bundled student" in why
    assert resolve_model("depth-pro", settings) == ("depth-pro", "chosen")
    result = predict_image(np.zeros((48, 64, 3), np.uint8), settings=settings)
    assert result.model == BUNDLED_MODEL
