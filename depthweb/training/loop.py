"""The one training loop: config in, a trained student (and its checkpoints and log) out.

``train(config, run_dir)`` runs on CPU, one GPU, or several under ``torchrun`` (``WORLD_SIZE`` >
1: a process group, a ``DistributedSampler`` per rank, DDP; rank 0 writes) without code changes.
It resumes from the newest checkpoint in ``run_dir`` (same config), keeps an exponential moving
average of the weights when ``ema_decay`` > 0 (saved as the student), logs one JSON line per step
to ``<run_dir>/metrics.jsonl``, shows a tqdm bar, and reports each step to ``callback`` (return
True from it to stop early; a checkpoint is written first). The trained student ends up in
``<run_dir>/student/`` (``model.safetensors`` + ``config.json``). ``init_from`` (a saved student
folder of the same architecture) starts a new run from those weights instead of random ones
(fine-tuning; a fresh optimizer and schedule); a resumed run takes its checkpoint instead.

Randomness: data order comes from the sampler's seed and epoch; flips and perturbations from a
generator seeded by ``(seed, step)``, so a resumed run continues exactly as if never stopped.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm.auto import tqdm

from depthweb.fsutil import atomic_write_bytes
from depthweb.models.torch_utils import IMAGENET_MEAN, IMAGENET_STD, normalize, pick_device
from depthweb.training.checkpoint import (
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
    save_final_student,
)
from depthweb.training.config import TrainConfig
from depthweb.training.datasets import build_dataset
from depthweb.training.objective import (
    FrozenEncoder,
    TrainModule,
    batch_loss,
    feature_loss,
    prepare_batch,
)
from depthweb.training.student import build_student, check_init_from, load_weights

log = logging.getLogger(__name__)


@dataclass
class ProgressEvent:
    """One finished optimisation step (what a progress bar or the Train tab shows)."""

    step: int
    total_steps: int
    loss: float
    lr: float
    epoch: int
    elapsed_s: float

    @property
    def fraction(self) -> float:
        return self.step / max(self.total_steps, 1)


@dataclass
class TrainResult:
    run_dir: Path
    student_dir: Path | None
    steps: int
    last_loss: float
    elapsed_s: float
    stopped_early: bool


Callback = Callable[[ProgressEvent], "bool | None"]


@dataclass
class _Dist:
    world: int
    rank: int
    device: str

    @property
    def main(self) -> bool:
        return self.rank == 0


def _setup_distributed(preference: str) -> _Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = pick_device(preference)
    if world <= 1:
        return _Dist(1, 0, device)
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device.startswith("cuda"):
        device = f"cuda:{local}"
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return _Dist(world, dist.get_rank(), device)


def lr_factor(step: int, total: int, warmup: int, min_ratio: float) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to ``min_ratio`` at ``total``."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(total - warmup, 1))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def _epoch_batches(sampler: DistributedSampler, epoch: int, batch_size: int,
                   per_epoch: int) -> list[list[int]]:
    sampler.set_epoch(epoch)
    idx = list(sampler)
    return [idx[k * batch_size:(k + 1) * batch_size] for k in range(per_epoch)]


def _all_mean(value: torch.Tensor, world: int) -> float:
    if world > 1:
        value = value.detach().clone()
        dist.all_reduce(value)
        value /= world
    return float(value)


def _stop_flag(stop: bool, d: _Dist) -> bool:
    if d.world <= 1:
        return stop
    flag = torch.tensor([1.0 if stop else 0.0], device=d.device)
    dist.broadcast(flag, 0)
    return bool(flag.item())


def _build(cfg: TrainConfig, d: _Dist):
    student = build_student(cfg.model)
    if cfg.init_from:
        load_weights(student, check_init_from(cfg.init_from, cfg.model))
    encoder = None
    if cfg.loss.feature_weight > 0:
        if not cfg.loss.feature_encoder:
            raise ValueError("feature_weight > 0 needs loss.feature_encoder (a local directory)")
        encoder = FrozenEncoder(cfg.loss.feature_encoder).to(d.device)
    module = TrainModule(student, encoder.dim if encoder else None, cfg.loss.feature_level)
    module.to(d.device)
    optimizer = torch.optim.AdamW(module.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, cfg.steps, cfg.warmup_steps, cfg.min_lr_ratio))
    return module, encoder, optimizer, scheduler


def train(config: TrainConfig, run_dir: str | Path, *, callback: Callback | None = None,
          resume: bool = True, progress: bool = True, dataset: Dataset | None = None
          ) -> TrainResult:
    """Train the configured student; see the module docstring. ``dataset`` overrides the
    config's data sources (tests, services that build their own)."""
    run_dir = Path(run_dir)
    d = _setup_distributed(config.device)
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    if d.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(run_dir / "train_config.json",
                           json.dumps(config.to_dict(), indent=2).encode())
    data = dataset if dataset is not None else build_dataset(
        config.data, config.image_size, config.loss.target, config.render_workers)
    module, encoder, optimizer, scheduler = _build(config, d)
    ema = WeightAverage(module.student, config.ema_decay) if config.ema_decay > 0 else None
    step, elapsed = _resume(run_dir, module, ema, optimizer, scheduler, d) if resume else (0, 0.0)
    model = module
    if d.world > 1:
        model = torch.nn.parallel.DistributedDataParallel(
            module, device_ids=[d.device] if d.device.startswith("cuda") else None)
    sampler = DistributedSampler(data, num_replicas=d.world, rank=d.rank, shuffle=True,
                                 seed=config.seed, drop_last=True)
    per_epoch = max(1, len(sampler) // config.batch_size)
    bar = tqdm(total=config.steps, initial=step, disable=not (progress and d.main),
               desc="train", dynamic_ncols=True)
    last_loss, stopped, t_start = _logged_loss(run_dir, step), False, time.perf_counter() - elapsed
    while step < config.steps and not stopped:
        epoch, offset = divmod(step, per_epoch)
        batches = _epoch_batches(sampler, epoch, config.batch_size, per_epoch)[offset:]
        loader = DataLoader(data, batch_sampler=batches, num_workers=config.num_workers)
        for raw in loader:
            step += 1
            last_loss = _train_step(model, module, encoder, optimizer, scheduler, raw, config,
                                    d, step)
            if ema is not None:
                ema.update(module.student, step)
            elapsed = time.perf_counter() - t_start
            event = ProgressEvent(step, config.steps, last_loss, scheduler.get_last_lr()[0],
                                  epoch, elapsed)
            stop = _report(event, run_dir, config, d, bar, callback)
            stopped = _stop_flag(stop, d) and step < config.steps
            if step % config.checkpoint_every == 0 or step == config.steps or stopped:
                _checkpoint(run_dir, step, module, ema, optimizer, scheduler, elapsed, config, d)
            if step >= config.steps or stopped:
                break
    bar.close()
    student_dir = None
    if d.main:
        extra = {"steps": step, "final_loss": last_loss, "elapsed_s": round(elapsed, 1),
                 "config": config.to_dict(),
                 "weights": "exponential moving average" if ema is not None else "last step"}
        final = ema.model if ema is not None else module.student
        student_dir = save_final_student(run_dir, final, extra)
    if d.world > 1:
        dist.barrier()
    return TrainResult(run_dir, student_dir, step, last_loss, elapsed, stopped)


def _resume(run_dir: Path, module: TrainModule, ema: WeightAverage | None, optimizer,
            scheduler, d: _Dist) -> tuple[int, float]:
    """Restore the newest checkpoint, if any: (step reached, training seconds so far)."""
    ckpts = list_checkpoints(run_dir)
    if not ckpts:
        return 0, 0.0
    state = load_checkpoint(ckpts[-1], module.student, optimizer=optimizer, scheduler=scheduler,
                            aux=_aux(module, ema), map_location=d.device)
    log.info("resuming from %s at step %d", state.path, state.step)
    if d.main:
        _truncate_metrics(run_dir, state.step)
    return state.step, state.elapsed_s


def _train_step(model, module: TrainModule, encoder: FrozenEncoder | None, optimizer,
                scheduler, raw: dict, cfg: TrainConfig, d: _Dist, step: int) -> float:
    gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
    batch = prepare_batch(raw, cfg.perturb, hflip=cfg.hflip, generator=gen, device=d.device)
    x = normalize(batch.image, IMAGENET_MEAN, IMAGENET_STD)
    model.train()
    pred, feats = model(x)
    loss = batch_loss(pred, batch, cfg.loss)
    if encoder is not None and feats is not None:
        loss = loss + cfg.loss.feature_weight * feature_loss(feats, encoder, x, cfg.loss)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if cfg.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(module.parameters(), cfg.grad_clip)
    optimizer.step()
    scheduler.step()
    return _all_mean(loss.detach(), d.world)


def _report(event: ProgressEvent, run_dir: Path, cfg: TrainConfig, d: _Dist, bar,
            callback: Callback | None) -> bool:
    if not d.main:
        return False
    bar.update(1)
    bar.set_postfix(loss=f"{event.loss:.4f}", lr=f"{event.lr:.2e}")
    if event.step % cfg.log_every == 0 or event.step == event.total_steps:
        line = {"step": event.step, "loss": event.loss, "lr": event.lr, "epoch": event.epoch,
                "elapsed_s": round(event.elapsed_s, 3)}
        with (run_dir / "metrics.jsonl").open("a") as fh:
            fh.write(json.dumps(line) + "\n")
    return bool(callback(event)) if callback is not None else False


def _aux(module: TrainModule, ema: WeightAverage | None) -> dict[str, torch.nn.Module | None]:
    return {"proj": module.proj, "ema": ema.model if ema is not None else None}


class WeightAverage:
    """An exponential moving average of a model's weights (the student that gets saved).

    ``decay`` ramps up as ``min(decay, (1 + step) / (10 + step))`` so early steps count.
    """

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.decay = decay

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        for avg, cur in zip(self.model.state_dict().values(), model.state_dict().values(),
                            strict=True):
            if avg.dtype.is_floating_point:
                avg.mul_(d).add_(cur.detach(), alpha=1 - d)
            else:
                avg.copy_(cur)


def _checkpoint(run_dir: Path, step: int, module: TrainModule, ema: WeightAverage | None,
                optimizer, scheduler, elapsed: float, cfg: TrainConfig, d: _Dist) -> None:
    if d.main:
        save_checkpoint(run_dir, step, module.student, optimizer=optimizer, scheduler=scheduler,
                        aux=_aux(module, ema), elapsed_s=elapsed, keep=cfg.keep_checkpoints,
                        extra={"step": step})
    if d.world > 1:
        dist.barrier()


def _truncate_metrics(run_dir: Path, step: int) -> None:
    """Drop log lines of steps after ``step`` (written after the checkpoint we resume from)."""
    path = run_dir / "metrics.jsonl"
    if path.is_file():
        kept = [json.dumps(m) for m in read_metrics(run_dir) if m["step"] <= step]
        atomic_write_bytes(path, "".join(line + "\n" for line in kept).encode())


def _logged_loss(run_dir: Path, step: int) -> float:
    """The logged loss of ``step`` (a resumed run that has nothing left to do reports it)."""
    if step <= 0:
        return math.nan
    return next((float(m["loss"]) for m in reversed(read_metrics(run_dir))
                 if m.get("step") == step and "loss" in m), math.nan)


def read_metrics(run_dir: str | Path) -> list[dict]:
    """The per-step lines of ``<run_dir>/metrics.jsonl`` (for loss curves); a line cut off by
    a crash (power loss mid-write) is skipped."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line) if line.strip() else None
        except json.JSONDecodeError:
            log.warning("%s: skipping a torn line %r", path, line[:80])
            continue
        if isinstance(row, dict) and "step" in row:
            out.append(row)
    return out
