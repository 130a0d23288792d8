"""GPU throughput per model: fp16 against fp32 (the baseline), same run, same device.

Real-size architectures with random weights, built from transformers configs (no hub access):
Depth Anything V2 small / base / large (DINOv2 ViT-S/B/L, 24.8 / 97.5 / 335.3 M parameters, as
the released checkpoints), Depth Pro (three DINOv2 ViT-L/16 encoders, FOV head on, 952 M) and the
bundled student (``assets/student``, its real weights). Each model gets random normalised
inputs: 518x518 for Depth Anything, 512x512 for the student (its sides must be multiples of
64), Depth Pro's fixed 1536x1536 canvas; batch sizes 1 and 8. Throughput = images / second of
the forward pass under ``torch.inference_mode`` (CUDA synchronised; warm-up first; median of
``--repeats`` timed rounds). fp16 = the model and input cast to float16 (``model.half()``).

Without a CUDA device it reports one skipped row and measures nothing. Run alone with

    python -m bench --only gpu           # or: python -m bench.bench_gpu [--models ...]
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from bench.common import REPO, Row, Section, fmt_num, markdown_table, median

log = logging.getLogger(__name__)
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# hidden, layers, heads, out_indices, neck sizes, fusion size (the released DA-V2 configs)
DA_V2 = {
    "small": (384, 12, 6, [3, 6, 9, 12], [48, 96, 192, 384], 64),
    "base": (768, 12, 12, [3, 6, 9, 12], [96, 192, 384, 768], 128),
    "large": (1024, 24, 16, [5, 12, 18, 24], [256, 512, 1024, 1024], 256),
}
VIT_L16 = {"model_type": "dinov2", "hidden_size": 1024, "num_hidden_layers": 24,
           "num_attention_heads": 16, "patch_size": 16, "image_size": 384}
MODELS = ("depth-anything-v2-small", "depth-anything-v2-base", "depth-anything-v2-large",
          "depth-pro", "depthweb-student")
BATCHES = (1, 8)


@dataclass(frozen=True)
class Arch:
    """A model to time: how to build it on a device, its input side, and how to call it."""

    name: str
    build: Callable[[object], object]  # torch.device -> nn.Module (eval)
    side: int
    call: Callable[[object, object], object]  # (model, pixel_values) -> output


def depth_anything_config(size: str):
    from transformers import DepthAnythingConfig, Dinov2Config

    hidden, layers, heads, out_indices, neck, fusion = DA_V2[size]
    backbone = Dinov2Config(hidden_size=hidden, num_hidden_layers=layers, mlp_ratio=4,
                            num_attention_heads=heads, out_indices=out_indices, patch_size=14,
                            image_size=518, reshape_hidden_states=False)
    return DepthAnythingConfig(backbone_config=backbone, reassemble_hidden_size=hidden,
                               neck_hidden_sizes=neck, fusion_hidden_size=fusion,
                               head_hidden_size=32)


def depth_pro_config():
    from transformers import DepthProConfig

    return DepthProConfig(image_model_config=dict(VIT_L16), patch_model_config=dict(VIT_L16),
                          fov_model_config=dict(VIT_L16), use_fov_model=True)


def _on(device, make: Callable[[], object]):
    import torch

    with torch.device(device):  # parameters are created on the device (fast for 1 B params)
        return make().eval()


def architectures() -> dict[str, Arch]:
    from transformers import DepthAnythingForDepthEstimation, DepthProForDepthEstimation

    from depthweb.training.student import load_student

    def hf_call(model, x):
        return model(pixel_values=x).predicted_depth

    arches = {
        f"depth-anything-v2-{size}": Arch(
            f"depth-anything-v2-{size}",
            lambda dev, s=size: _on(dev, lambda: DepthAnythingForDepthEstimation(
                depth_anything_config(s))), 518, hf_call)
        for size in DA_V2
    }
    arches["depth-pro"] = Arch("depth-pro", lambda dev: _on(
        dev, lambda: DepthProForDepthEstimation(depth_pro_config())), 1536, hf_call)
    arches["depthweb-student"] = Arch(
        "depthweb-student", lambda dev: load_student(REPO / "assets" / "student").to(dev),
        512, lambda model, x: model(x))
    return arches


def parameter_count(model) -> int:
    return sum(p.numel() for p in model.parameters())


def throughput(model, call, batch: int, side: int, dtype, device, repeats: int,
               iters: int = 5, warmup: int = 3) -> tuple[float, float]:
    """(median images/s, fraction of finite outputs) of ``call(model, x)`` for one setting."""
    import torch

    gen = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn(batch, 3, side, side, generator=gen).to(device=device, dtype=dtype)
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    rates = []
    with torch.inference_mode():
        for _ in range(warmup):
            out = call(model, x)
        sync()
        finite = float(torch.isfinite(out.float()).float().mean())
        for _ in range(repeats):
            t0 = time.perf_counter()
            for _ in range(iters):
                call(model, x)
            sync()
            rates.append(batch * iters / (time.perf_counter() - t0))
    return median(rates), finite


def measure_model(arch: Arch, device, repeats: int) -> list[dict]:
    """One result per (batch, dtype); fp32 first, then the same weights cast to fp16."""
    import torch

    model = arch.build(device)
    n_params = parameter_count(model)
    out = []
    for dtype in (torch.float32, torch.float16):
        model = model.to(dtype)
        for batch in BATCHES:
            rate, finite = throughput(model, arch.call, batch, arch.side, dtype, device, repeats)
            out.append({"model": arch.name, "batch": batch, "dtype": str(dtype).split(".")[-1],
                        "rate": rate, "finite": finite, "params": n_params})
    del model
    if torch.device(device).type == "cuda":
        torch.cuda.empty_cache()
    return out


def rows_from(results: list[dict]) -> list[Row]:
    by = {(r["model"], r["batch"], r["dtype"]): r for r in results}
    rows = []
    for (model, batch, dtype), r in by.items():
        base = by.get((model, batch, "float32"))
        if dtype != "float16" or base is None:
            continue
        rows.append(Row(f"gpu: {model}, batch {batch}, fp16", r["rate"], base["rate"],
                        "images/s", better="higher", baseline_name="fp32, same model and GPU",
                        notes=f"{r['params'] / 1e6:.1f} M params; finite outputs "
                              f"{r['finite']:.0%}"))
    return rows


def run(quick: bool = False, models: tuple[str, ...] = MODELS) -> Section:
    """Summary rows and detail for ``python -m bench`` (quick: fewer timed rounds)."""
    import torch

    command = "python -m bench --only gpu"
    if not torch.cuda.is_available():
        row = Row("gpu: fp16 throughput per model", None, None, "images/s", better="higher",
                  skipped="no CUDA device")
        return Section("gpu", "GPU throughput (fp16 vs fp32)", command, [row],
                       "Skipped: `torch.cuda.is_available()` is False on this machine; no "
                       "numbers were measured.")
    torch.backends.cudnn.benchmark = True
    repeats = 3 if quick else 7
    arches = architectures()
    results, failures = [], []
    for name in models:
        try:
            results += measure_model(arches[name], "cuda", repeats)
        except (RuntimeError, ValueError, OSError) as exc:  # e.g. CUDA out of memory
            log.warning("gpu benchmark of %s failed: %s", name, exc)
            failures.append(Row(f"gpu: {name}", None, None, "images/s", better="higher",
                                skipped=f"{type(exc).__name__}: {str(exc).splitlines()[0][:80]}"))
            torch.cuda.empty_cache()
    table = markdown_table(
        ["model", "params M", "input", "batch", "dtype", "images/s (median)", "finite"],
        [[r["model"], f"{r['params'] / 1e6:.1f}", f"{arches[r['model']].side}²", r["batch"],
          r["dtype"], fmt_num(r["rate"]), f"{r['finite']:.0%}"] for r in results], "lrrrlrr")
    detail = (f"{torch.cuda.get_device_name(0)}, torch {torch.__version__} (CUDA "
              f"{torch.version.cuda}), median of {repeats} rounds of 5 forward passes.\n\n{table}")
    return Section("gpu", "GPU throughput (fp16 vs fp32)", command,
                   rows_from(results) + failures, detail)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    section = run(args.quick, tuple(args.models))
    print(section.detail)
    for row in section.rows:
        ratio = f"{row.ratio:.2f}x" if row.ratio and math.isfinite(row.ratio) else row.skipped
        print(f"{row.name}: {fmt_num(row.ours)} vs {fmt_num(row.baseline)} images/s ({ratio})")


if __name__ == "__main__":
    main()
