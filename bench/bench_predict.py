"""Non-model overhead per image: depthweb's Python API vs ``transformers.pipeline``.

Both run the same tiny random-weight Depth Anything V2 (saved to a temp dir) on the same real
images (file paths in, depth at input resolution out). The model's ``forward`` is timed inside
each run; overhead = wall time per image - forward time (decode, resize, normalise, upsample,
result objects). Medians over repeats. Run from the repo root:

    python -m bench.bench_predict [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from bench.common import DATA, REPO, Row, Section, fmt_num, markdown_table, median


class ForwardTimer:
    """Wraps a module's forward and sums its wall time (ms)."""

    def __init__(self, module) -> None:
        self.total_ms = 0.0
        self._orig = module.forward

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            out = self._orig(*args, **kwargs)
            self.total_ms += (time.perf_counter() - t0) * 1000
            return out

        module.forward = timed

    def take(self) -> float:
        ms, self.total_ms = self.total_ms, 0.0
        return ms


def images() -> list[Path]:
    found = sorted((DATA / "kitti" / "rgb").glob("*.png"))
    found += sorted((DATA / "nyu" / "rgb").glob("*"))
    found += sorted((DATA / "wild").glob("*unsplash.jpg"))
    if not found:
        raise SystemExit(f"no real images under {DATA}")
    return found


def measure(run_one, timer: ForwardTimer, paths: list[Path], repeats: int) -> dict[str, float]:
    run_one(paths[0])  # warm-up (lazy inits, allocator)
    timer.take()
    totals, overheads = [], []
    for _ in range(repeats):
        for p in paths:
            t0 = time.perf_counter()
            run_one(p)
            total = (time.perf_counter() - t0) * 1000
            totals.append(total)
            overheads.append(total - timer.take())
    return {"total_ms": median(totals), "overhead_ms": median(overheads)}


def measure_both(paths: list[Path], repeats: int) -> tuple[dict[str, float], dict[str, float]]:
    """(depthweb, pipeline) medians on the same tiny model and images."""
    sys.path.insert(0, str(REPO / "tests"))
    import torch
    from builders import build_tiny_depth_anything
    from transformers import pipeline

    from depthweb.models.registry import clear_cache, load_backend
    from depthweb.services.predict import predict_image

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    with tempfile.TemporaryDirectory() as tmp:
        weights = build_tiny_depth_anything(Path(tmp) / "da2")
        name = "depth-anything-v2-small"
        clear_cache()
        backend = load_backend(name, weights, device="cpu")
        ours_timer = ForwardTimer(backend.model)
        ours = measure(lambda p: predict_image(p, name, weights=weights, device="cpu"),
                       ours_timer, paths, repeats)
        pipe = pipeline("depth-estimation", model=str(weights), device="cpu")
        pipe_timer = ForwardTimer(pipe.model)
        theirs = measure(lambda p: pipe(str(p)), pipe_timer, paths, repeats)
        clear_cache()
    return ours, theirs


def run(quick: bool = False) -> Section:
    """Summary rows and detail for ``python -m bench`` (quick: 3 images, 1 repeat)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    paths = images()
    paths, repeats = (paths[::3], 1) if quick else (paths, 5)
    ours, theirs = measure_both(paths, repeats)
    base = "transformers.pipeline, same tiny model and images"
    rows = [
        Row("predict: non-model overhead per image", ours["overhead_ms"], theirs["overhead_ms"],
            "ms", baseline_name=base, notes="decode, resize, normalise, upsample, result"),
        Row("predict: total per image (tiny random-weight DA-V2)", ours["total_ms"],
            theirs["total_ms"], "ms", baseline_name=base),
    ]
    detail = markdown_table(
        ["path", "total ms", "overhead ms"],
        [["`transformers.pipeline(\"depth-estimation\")`", fmt_num(theirs["total_ms"]),
          fmt_num(theirs["overhead_ms"])],
         ["depthweb `predict_image`", fmt_num(ours["total_ms"]), fmt_num(ours["overhead_ms"])]],
        "lrr",
    )
    detail = (f"{len(paths)} real images from `../shared/data` (KITTI, NYU, Unsplash), "
              f"{repeats} repeat(s), medians over images x repeats.\n\n{detail}")
    return Section("predict", "Prediction overhead vs transformers.pipeline",
                   f"python -m bench.bench_predict --repeats {repeats}", rows, detail)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    paths = images()
    ours, theirs = measure_both(paths, args.repeats)
    print(f"images: {len(paths)} real ({DATA}), repeats {args.repeats}, torch threads "
          f"{torch.get_num_threads()}")
    print(f"{'path':<28}{'total ms':>10}{'overhead ms':>13}")
    print(f"{'transformers.pipeline':<28}{theirs['total_ms']:>10.1f}{theirs['overhead_ms']:>13.1f}")
    print(f"{'depthweb predict_image':<28}{ours['total_ms']:>10.1f}{ours['overhead_ms']:>13.1f}")
    print(f"overhead ratio depthweb / pipeline: {ours['overhead_ms'] / theirs['overhead_ms']:.2f}")


if __name__ == "__main__":
    main()
