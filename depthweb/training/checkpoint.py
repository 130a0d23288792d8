"""Checkpoints of a run: ``<run>/checkpoints/step_NNNNNNN/`` holds the student
(``model.safetensors`` + ``config.json``) and ``trainer_state.pt`` (step, optimizer, scheduler,
auxiliary modules by name, e.g. the feature projection and the weight average, elapsed time). A
checkpoint is written to a hidden temporary folder and renamed, and deleted by renaming it to a
hidden name first, so a ``step_*`` folder is always complete (a run killed at any moment leaves
at worst hidden leftovers, removed by the next save); the newest is what a run resumes from.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from depthweb.fsutil import fsync_tree, remove_dir, replace_dir
from depthweb.training.student import load_weights, save_student

log = logging.getLogger(__name__)

STATE_FILE = "trainer_state.pt"
REQUIRED_FILES = ("config.json", STATE_FILE)


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
    done = [p for p in root.glob("step_*") if all((p / f).is_file() for f in REQUIRED_FILES)
            and any(p.glob("*.safetensors"))]
    return sorted(done, key=lambda p: int(p.name.split("_")[1]))


def _clear_leftovers(root: Path) -> None:
    """Hidden folders of saves and deletions a killed run did not finish."""
    for p in root.glob(".*"):
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)


def save_checkpoint(run_dir: str | Path, step: int, student: nn.Module, *,
                    optimizer: torch.optim.Optimizer, scheduler,
                    aux: Mapping[str, nn.Module | None],
                    elapsed_s: float, extra: dict | None = None, keep: int = 2) -> Path:
    """Write the checkpoint of ``step`` and keep only the newest ``keep`` of them."""
    root = checkpoint_dir(run_dir)
    final = root / f"step_{step:07d}"
    tmp = root / f".tmp_step_{step:07d}"
    root.mkdir(parents=True, exist_ok=True)
    _clear_leftovers(root)
    save_student(student, tmp, extra)
    state = {"step": step, "elapsed_s": elapsed_s, "optimizer": optimizer.state_dict(),
             "scheduler": scheduler.state_dict(),
             "aux": {k: m.state_dict() for k, m in aux.items() if m is not None}}
    torch.save(state, tmp / STATE_FILE)
    fsync_tree(tmp)
    replace_dir(tmp, final)
    for old in list_checkpoints(run_dir)[:-max(keep, 1)]:
        remove_dir(old)
    log.info("checkpoint %s", final)
    return final


def save_final_student(run_dir: str | Path, student: nn.Module, extra: dict | None = None
                       ) -> Path:
    """Write the run's trained student to ``<run_dir>/student/`` as a whole: built in a hidden
    folder and swapped in, so ``student/`` is always a complete student (or absent)."""
    final = Path(run_dir) / "student"
    tmp = Path(run_dir) / ".tmp_student"
    shutil.rmtree(tmp, ignore_errors=True)
    save_student(student, tmp, extra)
    fsync_tree(tmp)
    replace_dir(tmp, final)
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
