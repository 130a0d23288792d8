"""Student networks: a compact CPU-friendly encoder-decoder and a transformers Depth Anything.

Both take ImageNet-normalised images (B, 3, H, W) and return relative disparity (B, H, W) at the
input resolution, so the training loop treats them alike. Saved as a directory with
``model.safetensors`` and ``config.json``: the compact student's config has
``"model_type": "depthweb_student"``; the Depth Anything student is saved with transformers'
``save_pretrained`` (``"model_type": "depth_anything"``), so the ``depth_anything`` backend
can serve it too.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)

MODEL_TYPE = "depthweb_student"

# Dinov2 backbone / DPT neck sizes of the public Depth Anything checkpoints (and a tiny one).
DA_SIZES: dict[str, dict] = {
    "tiny": {"hidden": 32, "layers": 4, "heads": 2, "neck": [16, 32, 64, 64], "fusion": 32},
    "small": {"hidden": 384, "layers": 12, "heads": 6, "neck": [48, 96, 192, 384], "fusion": 64},
    "base": {"hidden": 768, "layers": 12, "heads": 12, "neck": [96, 192, 384, 768], "fusion": 128},
    "large": {"hidden": 1024, "layers": 24, "heads": 16, "neck": [256, 512, 1024, 1024],
              "fusion": 256},
}


@dataclass
class StudentConfig:
    """What network to build.

    ``arch``: ``compact`` (this module's encoder-decoder) or ``depth_anything`` (transformers, at
    ``da_size``; ``da_pretrained`` a local directory to start from, else random init).
    ``widths``: channels of the compact encoder stages (strides 2, 4, ... 2**len).
    ``coord_channel``: feed the normalised row coordinate as a 4th input channel (lets the net
    learn where the horizon and the floor usually are). ``input_size``: shorter side the backend
    resizes images to; ``multiple``: sides are rounded to it. ``kind``: ``relative_disparity``
    (raw output) or ``metric_depth`` (softplus output, metres; trained with SILog).
    """

    arch: str = "compact"
    kind: str = "relative_disparity"
    widths: list[int] = field(default_factory=lambda: [24, 32, 48, 64, 96, 128])
    coord_channel: bool = True
    input_size: int = 192
    multiple: int = 32
    da_size: str = "small"
    da_pretrained: str | None = None

    @classmethod
    def from_dict(cls, data: dict) -> StudentConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def _norm(ch: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, ch // 4) or 1, ch)


class ConvBlock(nn.Module):
    """Two 3x3 convolutions with GroupNorm and a residual connection; stride on the first."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.n1 = _norm(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.n2 = _norm(cout)
        self.skip = (nn.Identity() if stride == 1 and cin == cout
                     else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), _norm(cout)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.n1(self.conv1(x)), inplace=True)
        return F.relu(self.n2(self.conv2(y)) + self.skip(x), inplace=True)


class CompactStudent(nn.Module):
    """A small U-Net: residual encoder (strides 2..2**n), a global-context bottleneck, a decoder
    with skip connections and a disparity head. Input (B, 3, H, W) normalised, H and W multiples
    of ``2**len(widths)``; output (B, H, W) relative disparity.
    """

    def __init__(self, config: StudentConfig) -> None:
        super().__init__()
        self.config = config
        w = list(config.widths)
        cin = 3 + int(config.coord_channel)
        self.encoder = nn.ModuleList(
            [ConvBlock(cin if i == 0 else w[i - 1], w[i], stride=2) for i in range(len(w))]
        )
        self.context = nn.Sequential(nn.Linear(w[-1], w[-1]), nn.ReLU(inplace=True))
        self.decoder = nn.ModuleList(
            [ConvBlock(w[i + 1] + w[i], w[i]) for i in reversed(range(len(w) - 1))]
        )
        self.head = nn.Sequential(nn.Conv2d(w[0], w[0], 3, 1, 1), nn.ReLU(inplace=True),
                                  nn.Conv2d(w[0], 1, 1))

    @property
    def stride(self) -> int:
        return 2 ** len(self.config.widths)

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Encoder features, finest first: (B, widths[i], H / 2**(i+1), W / 2**(i+1))."""
        if self.config.coord_channel:
            rows = torch.linspace(-1.0, 1.0, x.shape[-2], device=x.device, dtype=x.dtype)
            x = torch.cat([x, rows.view(1, 1, -1, 1).expand(x.shape[0], 1, -1, x.shape[-1])], 1)
        feats = []
        for block in self.encoder:
            x = block(x)
            feats.append(x)
        return feats

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The prediction (B, H, W) and the encoder features (see :meth:`encode`)."""
        size = x.shape[-2:]
        feats = self.encode(x)
        y = feats[-1]
        y = y + self.context(y.mean((2, 3)))[:, :, None, None]
        for block, skip in zip(self.decoder, reversed(feats[:-1]), strict=True):
            y = F.interpolate(y, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            y = block(torch.cat([y, skip], 1))
        y = F.interpolate(self.head(y), size=size, mode="bilinear", align_corners=False)[:, 0]
        return (F.softplus(y) if self.config.kind == "metric_depth" else y), feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)[0]


class DepthAnythingStudent(nn.Module):
    """transformers' ``DepthAnythingForDepthEstimation`` with the student interface: sides are
    resized to multiples of the patch size inside, the output comes back at the input size."""

    def __init__(self, model: nn.Module, config: StudentConfig) -> None:
        super().__init__()
        self.model = model
        self.config = config
        self.patch = int(getattr(model.config, "patch_size", 14))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        ph = max(round(h / self.patch), 1) * self.patch
        pw = max(round(w / self.patch), 1) * self.patch
        if (ph, pw) != (h, w):
            x = F.interpolate(x, size=(ph, pw), mode="bilinear", align_corners=False)
        pred = self.model(pixel_values=x).predicted_depth
        if pred.shape[-2:] != (h, w):
            pred = F.interpolate(pred[:, None], size=(h, w), mode="bilinear",
                                 align_corners=False)[:, 0]
        return pred


def build_depth_anything(config: StudentConfig) -> DepthAnythingStudent:
    """A Depth Anything student: from ``da_pretrained`` when given, else random at ``da_size``."""
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config

    if config.da_pretrained:
        model = DepthAnythingForDepthEstimation.from_pretrained(config.da_pretrained)
        return DepthAnythingStudent(model, config)
    if config.da_size not in DA_SIZES:
        raise ValueError(f"unknown Depth Anything size {config.da_size!r}; pick one of "
                         f"{', '.join(DA_SIZES)}")
    s = DA_SIZES[config.da_size]
    n = s["layers"]
    backbone = Dinov2Config(hidden_size=s["hidden"], num_hidden_layers=n,
                            num_attention_heads=s["heads"], patch_size=14, image_size=518,
                            out_indices=[n // 4, n // 2, 3 * n // 4, n],
                            reshape_hidden_states=False)
    da = DepthAnythingConfig(backbone_config=backbone, reassemble_hidden_size=s["hidden"],
                             neck_hidden_sizes=s["neck"],
                             fusion_hidden_size=s["fusion"], head_hidden_size=s["fusion"] // 2,
                             depth_estimation_type="relative")
    return DepthAnythingStudent(DepthAnythingForDepthEstimation(da), config)


def build_student(config: StudentConfig) -> nn.Module:
    """The network named by ``config.arch``."""
    if config.arch == "compact":
        return CompactStudent(config)
    if config.arch == "depth_anything":
        return build_depth_anything(config)
    raise ValueError(f"unknown student arch {config.arch!r}; use 'compact' or 'depth_anything'")


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside DistributedDataParallel (or the model itself)."""
    return model.module if hasattr(model, "module") else model


def save_student(model: nn.Module, out_dir: str | Path, extra: dict | None = None) -> Path:
    """Write ``model.safetensors`` + ``config.json`` into ``out_dir`` (created); return it.

    ``extra`` (JSON-ready) is stored in the compact student's config under ``"training"``.
    """
    from safetensors.torch import save_file

    model = unwrap(model)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if isinstance(model, DepthAnythingStudent):
        model.model.save_pretrained(out, safe_serialization=True)
        return out
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    cfg = {"model_type": MODEL_TYPE, **asdict(model.config), "training": extra or {}}
    (out / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    return out


def read_student_config(path: str | Path) -> dict:
    """The raw ``config.json`` of a saved student directory."""
    return json.loads((Path(path) / "config.json").read_text())


def load_student(path: str | Path, map_location: str = "cpu") -> nn.Module:
    """A saved student (either arch) from its directory, in eval mode."""
    from safetensors.torch import load_file

    path = Path(path)
    raw = read_student_config(path)
    if raw.get("model_type") == "depth_anything":
        config = StudentConfig(arch="depth_anything", da_pretrained=str(path))
        return build_depth_anything(config).eval()
    if raw.get("model_type") != MODEL_TYPE:
        raise ValueError(f"{path / 'config.json'} is not a depthweb student "
                         f"(model_type {raw.get('model_type')!r})")
    model = CompactStudent(StudentConfig.from_dict(raw))
    model.load_state_dict(load_file(str(path / "model.safetensors"), device=map_location))
    return model.eval()


def check_init_from(path: str | Path, config: StudentConfig) -> Path:
    """The saved student folder ``path`` that a run fine-tunes from (``TrainConfig.init_from``),
    after checking it exists and has the run's architecture; ValueError with a sentence if not."""
    path = Path(path)
    if not (path / "model.safetensors").is_file() or not (path / "config.json").is_file():
        raise ValueError(f"init_from {path} is not a saved student folder (model.safetensors "
                         "and config.json)")
    saved = read_student_config(path)
    for key in ("arch", "widths", "coord_channel", "kind"):
        want = getattr(config, key)
        if isinstance(want, tuple):
            want = list(want)
        if key in saved and saved[key] != want:
            raise ValueError(f"the student in {path} has {key}={saved[key]!r}, the run's model "
                             f"asks for {want!r}")
    return path


def load_weights(model: nn.Module, path: str | Path) -> None:
    """Load ``<path>/model.safetensors`` into an already built student of the same config."""
    from safetensors.torch import load_file

    state = load_file(str(Path(path) / "model.safetensors"))
    model = unwrap(model)
    target = model.model if isinstance(model, DepthAnythingStudent) else model
    target.load_state_dict(state)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
