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
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"


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
        sys.exit(f"no real images under {DATA}")
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
    return {"total_ms": statistics.median(totals), "overhead_ms": statistics.median(overheads)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.path.insert(0, str(REPO / "tests"))
    import torch
    from builders import build_tiny_depth_anything
    from transformers import pipeline

    from depthweb.models.registry import load_backend
    from depthweb.services.predict import predict_image

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    paths = images()
    with tempfile.TemporaryDirectory() as tmp:
        weights = build_tiny_depth_anything(Path(tmp) / "da2")
        name = "depth-anything-v2-small"
        backend = load_backend(name, weights, device="cpu")
        ours_timer = ForwardTimer(backend.model)
        ours = measure(lambda p: predict_image(p, name, weights=weights, device="cpu"),
                       ours_timer, paths, args.repeats)
        pipe = pipeline("depth-estimation", model=str(weights), device="cpu")
        pipe_timer = ForwardTimer(pipe.model)
        theirs = measure(lambda p: pipe(str(p)), pipe_timer, paths, args.repeats)
    print(f"images: {len(paths)} real ({DATA}), repeats {args.repeats}, torch threads "
          f"{torch.get_num_threads()}")
    print(f"{'path':<28}{'total ms':>10}{'overhead ms':>13}")
    print(f"{'transformers.pipeline':<28}{theirs['total_ms']:>10.1f}{theirs['overhead_ms']:>13.1f}")
    print(f"{'depthweb predict_image':<28}{ours['total_ms']:>10.1f}{ours['overhead_ms']:>13.1f}")
    print(f"overhead ratio depthweb / pipeline: {ours['overhead_ms'] / theirs['overhead_ms']:.2f}")


if __name__ == "__main__":
    main()
