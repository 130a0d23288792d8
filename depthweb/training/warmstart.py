"""Fine-tuning from a trained student: a run that starts from its weights instead of random ones.

The training loop resumes from the newest checkpoint of its run folder. :func:`seed_run`
writes a *step-0* checkpoint into a new run folder: the given student's weights, a fresh
optimizer and a fresh learning-rate schedule of the run's config. ``train(config, run_dir,
resume=True)`` (or ``depthweb train ... --resume``) then trains every step of the config from
those weights, exactly as a run from scratch would, seeded the same way. Used by the loop
benchmark (``bench/bench_loop.py``) so every student fine-tunes from one common starting point.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from depthweb.training.checkpoint import list_checkpoints, save_checkpoint
from depthweb.training.config import TrainConfig
from depthweb.training.loop import lr_factor
from depthweb.training.objective import TrainModule
from depthweb.training.student import build_student, load_weights, read_student_config


def seed_run(run_dir: str | Path, config: TrainConfig, student_dir: str | Path) -> Path:
    """Write the step-0 checkpoint of ``run_dir`` from the saved student in ``student_dir``
    (same architecture and widths as ``config.model``); returns the checkpoint's folder.
    Refuses a run folder that already holds checkpoints."""
    run_dir = Path(run_dir)
    if list_checkpoints(run_dir):
        raise ValueError(f"{run_dir} already holds checkpoints; seed a new run folder")
    saved = read_student_config(student_dir)
    for key in ("arch", "widths", "coord_channel", "kind"):
        want = getattr(config.model, key)
        if key in saved and saved[key] != want:
            raise ValueError(f"the student in {student_dir} has {key}={saved[key]!r}, the "
                             f"config asks for {want!r}")
    if config.loss.feature_weight > 0:
        raise ValueError("seeding a run with feature alignment is not supported")
    student = build_student(config.model)
    load_weights(student, student_dir)
    module = TrainModule(student, None, config.loss.feature_level)
    optimizer = torch.optim.AdamW(module.parameters(), lr=config.lr,
                                  weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, config.steps, config.warmup_steps,
                                       config.min_lr_ratio))
    ema = copy.deepcopy(student) if config.ema_decay > 0 else None  # the average starts here too
    return save_checkpoint(run_dir, 0, student, optimizer=optimizer, scheduler=scheduler,
                           aux={"proj": None, "ema": ema}, elapsed_s=0.0,
                           extra={"step": 0, "seeded_from": str(Path(student_dir).resolve())})
