"""Fixtures of the train-loop tests: tiny exports and runs, NYU-style evaluation folders written
from rendered scenes, and the CLI run in-process against a data directory in ``tmp_path``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from depthweb.config import Settings
from depthweb.training.synthetic import render_scene
from tests.training.conftest import write_export

TEACHER = "depth-anything-v2-small"
TINY = {"model": {"arch": "compact", "widths": [8, 12, 16], "input_size": 64},
        "image_size": [64, 96], "batch_size": 4, "steps": 4, "lr": 0.005, "warmup_steps": 0,
        "checkpoint_every": 2, "device": "cpu", "threads": 2}
"""A training config small enough for a few CPU steps in about a second."""


def tiny_export(root: Path, n: int = 6, teacher: str = TEACHER,
                teacher_weights: str = "/weights/of/teacher") -> Path:
    """An export of ``n`` pseudo-labelled rendered scenes (relative disparity) by ``teacher``."""
    rows = [{"source": "pseudo", "kind": "relative_disparity", "teacher": teacher,
             "teacher_weights": teacher_weights} for _ in range(n)]
    return write_export(root, rows, size=(48, 64))


def write_eval_folder(root: Path, n: int = 3, size: tuple[int, int] = (96, 128),
                      outdoor: bool = False) -> Path:
    """An NYU-style folder (``rgb/``, ``depth/`` uint16 mm, ``test_annotations.json`` with
    repository-style paths) of ``n`` rendered scenes; returns it."""
    (root / "rgb").mkdir(parents=True, exist_ok=True)
    (root / "depth").mkdir(exist_ok=True)
    files = []
    for i in range(n):
        frame = render_scene(500 + i, *size, outdoor=outdoor)
        depth = np.where(np.isfinite(frame.depth), frame.depth, 0.0)
        mm = np.clip(np.round(depth * 1000.0), 0, 65535).astype(np.uint16)
        Image.fromarray(frame.rgb).save(root / "rgb" / f"rgb_{i:05d}.png")
        Image.fromarray(mm).save(root / "depth" / f"sync_depth_{i:05d}.png")
        cam = frame.intrinsics
        files.append({"cam_in": [cam.fx, cam.fy, cam.cx, cam.cy], "depth_scale": 1000.0,
                      "rgb": f"data/nyu_demo/rgb/rgb_{i:05d}.png",
                      "depth": f"data/nyu_demo/depth/sync_depth_{i:05d}.png"})
    (root / "test_annotations.json").write_text(json.dumps({"files": files}))
    return root


def settings_for(root: Path) -> Settings:
    return Settings(data_dir=root / "data", output_dir=root / "outputs", device="cpu")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """A finished 4-step run on a tiny export (shared by a module's tests: do not modify)."""
    from depthweb.services.train import build_config
    from depthweb.training.loop import train

    root = tmp_path_factory.mktemp("tiny-run")
    export = tiny_export(root / "export")
    cfg = build_config(export, TINY)
    train(cfg, root / "run", progress=False)
    return root / "run"


@pytest.fixture
def cli(monkeypatch, tmp_path, capsys) -> Callable[..., tuple[int, str, str]]:
    """``cli(*argv)`` -> (exit code, stdout, stderr) of ``depthweb`` run in-process with
    ``DEPTHWEB_DATA_DIR=<tmp_path>/data`` (fresh settings for each call)."""
    from depthweb.cli import main
    from depthweb.config import get_settings

    monkeypatch.setenv("DEPTHWEB_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DEPTHWEB_DEVICE", "cpu")
    monkeypatch.delenv("DEPTHWEB_DATABASE_URL", raising=False)

    def run(*argv: str) -> tuple[int, str, str]:
        get_settings.cache_clear()
        capsys.readouterr()
        code = main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return code, out, err

    return run
