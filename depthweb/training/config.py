"""Training configuration: one dataclass tree, loaded from YAML or JSON.

Example (YAML)::

    model: {arch: compact, widths: [16, 24, 32, 48, 64, 96], input_size: 192}
    data:
      - {type: export, path: /data/exports/run1}
      - {type: synthetic, count: 2000, seed: 0, outdoor_fraction: 0.5}
    image_size: [160, 256]
    batch_size: 8
    steps: 2000
    lr: 0.001
    loss: {target: disparity, gradient_weight: 0.5, pseudo_trim: 0.1}
    perturb: {enabled: true, cutmix_prob: 0.5}

Unknown keys are an error (a typo should not silently train something else).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from depthweb.training.student import StudentConfig


@dataclass
class DataSource:
    """``type`` export: an export directory (``path``, rows of ``split``); ``type`` synthetic:
    ``count`` rendered scenes from ``seed`` (``outdoor_fraction`` of them streets), optionally
    cached as ``.npz`` under ``cache_dir``. ``augment``: photometric domain randomisation
    (colour jitter and blur, as for pseudo-labels but without CutMix) on this source's images."""

    type: str
    path: str | None = None
    split: str = "train"
    count: int = 1000
    seed: int = 0
    outdoor_fraction: float = 0.5
    cache_dir: str | None = None
    augment: bool = False


@dataclass
class LossConfig:
    """``target`` disparity: SSI + ``gradient_weight`` * gradient matching (relative students);
    metric: SILog (metric students). Pseudo-labels drop their ``pseudo_trim`` largest pixel
    losses. ``feature_weight`` > 0 adds feature alignment to the frozen transformers encoder at
    ``feature_encoder`` (a local directory) with tolerance ``feature_margin``."""

    target: str = "disparity"
    align: str = "median"
    gradient_weight: float = 0.5
    gradient_scales: int = 4
    pseudo_trim: float = 0.1
    silog_lambda: float = 0.5
    feature_weight: float = 0.0
    feature_margin: float = 0.85
    feature_encoder: str | None = None
    feature_level: int = -2


@dataclass
class PerturbConfig:
    """Strong perturbations, applied to pseudo-labelled samples only."""

    enabled: bool = True
    jitter: float = 0.4
    blur_prob: float = 0.5
    cutmix_prob: float = 0.5


@dataclass
class TrainConfig:
    """Everything a run needs; ``image_size`` (H, W) is what every sample is resized/cropped to."""

    model: StudentConfig = field(default_factory=StudentConfig)
    data: list[DataSource] = field(default_factory=list)
    image_size: tuple[int, int] = (160, 256)
    batch_size: int = 8
    steps: int = 1000
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 50
    min_lr_ratio: float = 0.05
    grad_clip: float = 1.0
    ema_decay: float = 0.0
    hflip: bool = True
    seed: int = 0
    checkpoint_every: int = 200
    keep_checkpoints: int = 2
    log_every: int = 1
    num_workers: int = 0
    render_workers: int = 1
    device: str = "auto"
    threads: int | None = None
    init_from: str | None = None
    loss: LossConfig = field(default_factory=LossConfig)
    perturb: PerturbConfig = field(default_factory=PerturbConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"unknown {where} key(s): {', '.join(unknown)}")
    return cls(**data)


def config_from_dict(data: dict[str, Any]) -> TrainConfig:
    """A :class:`TrainConfig` from plain data (as read from YAML / JSON)."""
    data = dict(data)
    model = _build(StudentConfig, dict(data.pop("model", {})), "model")
    sources = [_build(DataSource, dict(d), "data") for d in data.pop("data", [])]
    loss = _build(LossConfig, dict(data.pop("loss", {})), "loss")
    perturb = _build(PerturbConfig, dict(data.pop("perturb", {})), "perturb")
    if "image_size" in data:
        data["image_size"] = tuple(int(v) for v in data["image_size"])
    cfg = _build(TrainConfig, data, "config")
    cfg.model, cfg.data, cfg.loss, cfg.perturb = model, sources, loss, perturb
    validate(cfg)
    return cfg


def validate(cfg: TrainConfig) -> None:
    """Raise ValueError with a sentence for settings that cannot work."""
    if not cfg.data:
        raise ValueError("config has no data sources; add an export or synthetic source")
    for src in cfg.data:
        if src.type not in ("export", "synthetic"):
            raise ValueError(f"data source type {src.type!r} is not 'export' or 'synthetic'")
        if src.type == "export" and not src.path:
            raise ValueError("an export data source needs a path")
    if cfg.loss.target not in ("disparity", "metric"):
        raise ValueError(f"loss target {cfg.loss.target!r} is not 'disparity' or 'metric'")
    if (cfg.loss.target == "metric") != (cfg.model.kind == "metric_depth"):
        raise ValueError("a metric loss target needs model kind metric_depth, and vice versa")
    if cfg.steps < 1 or cfg.batch_size < 1:
        raise ValueError("steps and batch_size must be at least 1")
    if cfg.init_from is not None and not isinstance(cfg.init_from, str):
        raise ValueError("init_from must be the path of a saved student folder")
    if min(cfg.image_size) < 16:
        raise ValueError(f"image_size {cfg.image_size} is too small (at least 16 pixels a side)")


def load_config(path: str | Path) -> TrainConfig:
    """Read a ``.yaml`` / ``.yml`` / ``.json`` training config."""
    path = Path(path)
    text = path.read_text()
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        data = yaml.safe_load(text) or {}
    else:
        data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError(f"{path} does not hold a mapping of settings")
    return config_from_dict(data)
