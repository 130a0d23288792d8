"""Studio start-up and per-request overhead, against baselines measured in the same run.

1. Start-up, each in a fresh Python process (alternating, ``--runs`` each): the baseline imports
   gradio and builds a Blocks with three empty tabs; depthweb imports ``depthweb.ui.app`` and
   builds the whole Studio (no model is loaded at build time; the model directory is empty).
2. Work per predict request besides the model, on a real photo (the 1500x1000 Unsplash chess
   photo from ``../shared/data/wild``) with a synthetic prediction: ``studio.render`` (3D view,
   exports, GLB + PLY, normals, slider pictures) against the raw exports alone
   (``services.export.write_outputs``, what the CLI writes).

    python -m bench.bench_app_start [--runs 5]      # from the repo root; writes temp files only
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
PHOTO = REPO.parent / "shared" / "data" / "wild" / "randy-fath-G1yhU1Ej-9A-unsplash.jpg"

BASELINE = """
import time; t = time.perf_counter()
import gradio as gr
with gr.Blocks() as demo:
    with gr.Tabs():
        for name in ("Predict", "Compare", "Stereo"):
            with gr.Tab(name):
                gr.Markdown(name)
print(time.perf_counter() - t)
"""
STUDIO = """
import time; t = time.perf_counter()
from depthweb.config import Settings
from depthweb.ui.app import build_app
build_app(Settings(model_dir={model_dir!r}, output_dir={out!r}))
print(time.perf_counter() - t)
"""


def _run(code: str) -> float:
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env=env, cwd=tempfile.gettempdir())
    return float(out.stdout.strip().splitlines()[-1])


def startup(runs: int) -> tuple[list[float], list[float]]:
    with tempfile.TemporaryDirectory() as tmp:
        studio = STUDIO.format(model_dir=str(Path(tmp) / "models"), out=str(Path(tmp) / "out"))
        base, ours = [], []
        for _ in range(runs):
            base.append(_run(BASELINE))
            ours.append(_run(studio))
    return base, ours


def request_overhead(runs: int) -> tuple[list[float], list[float], tuple[int, int]]:
    from depthweb.imaging import load_image
    from depthweb.services.export import write_outputs
    from depthweb.services.studio import StudioState, render
    from depthweb.types import DepthKind, DepthResult, Intrinsics

    rgb = load_image(PHOTO).rgb
    h, w = rgb.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    disparity = (1.0 + 0.5 * np.sin(xx / 90.0) + yy / h).astype(np.float32)
    result = DepthResult(disparity, DepthKind.RELATIVE_DISPARITY, Intrinsics.from_fov(w, h, 60),
                         "synthetic")
    base, ours = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(runs):
            t0 = time.perf_counter()
            write_outputs(result, Path(tmp) / f"b{i}", "photo")
            t1 = time.perf_counter()
            render(StudioState(rgb, result, "photo"), Path(tmp) / f"s{i}")
            t2 = time.perf_counter()
            base.append(t1 - t0)
            ours.append(t2 - t1)
    return base, ours, (w, h)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}")
    base, ours = startup(args.runs)
    mb, mo = statistics.median(base), statistics.median(ours)
    print("\n| start-up (fresh process, median) | seconds |\n|---|---|")
    print(f"| gradio import + 3 empty tabs (baseline) | {mb:.2f} |")
    print(f"| depthweb Studio import + build_app | {mo:.2f} |")
    print(f"| ratio | {mo / mb:.2f}x |")
    if not PHOTO.exists():
        print(f"\n(skipping request overhead: {PHOTO} is missing)")
        return
    base, ours, (w, h) = request_overhead(args.runs)
    mb, mo = statistics.median(base), statistics.median(ours)
    print(f"\n| per request, {w}x{h} photo, model excluded (median) | seconds |\n|---|---|")
    print(f"| raw exports only: write_outputs (baseline) | {mb:.3f} |")
    print(f"| Studio render: 3D view, exports, GLB + PLY, normals, slider | {mo:.3f} |")
    print(f"| ratio | {mo / mb:.2f}x |")


if __name__ == "__main__":
    main()
