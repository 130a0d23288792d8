"""Checkpoints of a run: ``<run>/checkpoints/step_NNNNNNN/`` holds the student
(``model.safetensors`` + ``config.json``) and ``trainer_state.pt`` (step, optimizer, scheduler,
auxiliary modules by name, e.g. the feature projection and the weight average, elapsed time). A
checkpoint is written to a temporary folder and renamed, so a folder with ``trainer_state.pt`` is
always complete; the newest is what a run resumes from.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from depthweb.training.student import load_weights, save_student

log = logging.getLogger(__name__)

STATE_FILE = "trainer_state.pt"


@dataclass
class Resumed:
    step: int
    elapsed_s: float
    path: Path


def checkpoint_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints"


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    root = checkpoint_dir(run_dir)
    if not root.is_dir():
        return []
    done = [p for p in root.glob("step_*") if (p / STATE_FILE).is_file()]
    return sorted(done, key=lambda p: int(p.name.split("_")[1]))


def save_checkpoint(run_dir: str | Path, step: int, student: nn.Module, *,
                    optimizer: torch.optim.Optimizer, scheduler,
                    aux: Mapping[str, nn.Module | None],
                    elapsed_s: float, extra: dict | None = None, keep: int = 2) -> Path:
    """Write the checkpoint of ``step`` and keep only the newest ``keep`` of them."""
    root = checkpoint_dir(run_dir)
    final = root / f"step_{step:07d}"
    tmp = root / f".tmp_step_{step:07d}"
    shutil.rmtree(tmp, ignore_errors=True)
    save_student(student, tmp, extra)
    state = {"step": step, "elapsed_s": elapsed_s, "optimizer": optimizer.state_dict(),
             "scheduler": scheduler.state_dict(),
             "aux": {k: m.state_dict() for k, m in aux.items() if m is not None}}
    torch.save(state, tmp / STATE_FILE)
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    for old in list_checkpoints(run_dir)[:-max(keep, 1)]:
        shutil.rmtree(old, ignore_errors=True)
    log.info("checkpoint %s", final)
    return final


def load_checkpoint(path: str | Path, student: nn.Module, *, optimizer: torch.optim.Optimizer,
                    scheduler, aux: Mapping[str, nn.Module | None],
                    map_location: str = "cpu") -> Resumed:
    """Restore a checkpoint into already built objects; return where the run stands."""
    path = Path(path)
    load_weights(student, path)
    state = torch.load(path / STATE_FILE, map_location=map_location, weights_only=True)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    saved = state.get("aux") or {}
    for name, module in aux.items():
        if module is not None and name in saved:
            module.load_state_dict(saved[name])
    return Resumed(int(state["step"]), float(state.get("elapsed_s", 0.0)), path)
