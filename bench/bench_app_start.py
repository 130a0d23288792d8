"""Studio start-up and per-request overhead, against baselines measured in the same run.

0. Start to first response (:mod:`bench.first_response`): ``python app.py`` in a fresh
   process until the first HTTP 200 on ``/`` and the first answered ``/predict``, against a bare
   Gradio app with the same three tabs launched the same way.
1. Build only, each in a fresh Python process (alternating, ``--runs`` each): the baseline imports
   gradio and builds a Blocks with three empty tabs; depthweb imports ``depthweb.ui.app`` and
   builds the whole Studio (no model is loaded at build time; the model directory is empty).
2. Work per predict request besides the model, on a real photo (the 1500x1000 Unsplash chess
   photo from ``../shared/data/wild``) with a synthetic prediction: ``studio.render`` (3D view,
   exports, GLB + PLY, normals, slider pictures) against the raw exports alone
   (``services.export.write_outputs``, what the CLI writes).

    python -m bench.bench_app_start [--runs 5]      # from the repo root; writes temp files only
    python -m bench.bench_app_start --no-serve     # build-only and per-request parts only
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

from bench import first_response
from bench.common import DATA, Row, Section, fmt_num, markdown_table, median, subprocess_env

PHOTO = DATA / "wild" / "randy-fath-G1yhU1Ej-9A-unsplash.jpg"

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
from depthweb.server import assemble
assemble(Settings(model_dir={model_dir!r}, output_dir={out!r}))
print(time.perf_counter() - t)
"""


def _run(code: str) -> float:
    env = subprocess_env()
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


def start_rows(runs: int) -> tuple[list[Row], list[list[str]]]:
    """Summary rows and detail-table lines for start to first response."""
    ours_all, base_all = first_response.measure(runs)
    ours, base = first_response.medians(ours_all), first_response.medians(base_all)
    bare = "bare gradio Blocks, 3 empty tabs, launched the same way"
    rows = [
        Row("app start: process start to first HTTP 200 on /", ours.http_s, base.http_s, "s",
            baseline_name=bare, notes="python app.py"),
        Row("app start: process start to first /predict answered", ours.predict_s,
            base.predict_s, "s", baseline_name=bare + " (trivial /predict)",
            notes="gradio_client; includes loading the tiny model on first use"),
    ]
    lines = [["first HTTP 200 on /", fmt_num(base.http_s), fmt_num(ours.http_s),
              f"{ours.http_s / base.http_s:.2f}x"],
             ["first /predict answered", fmt_num(base.predict_s), fmt_num(ours.predict_s),
              f"{ours.predict_s / base.predict_s:.2f}x"]]
    return rows, lines


def render_rows(runs: int) -> tuple[Row, str]:
    """The per-request row and its detail table."""
    rb, ro, (w, h) = request_overhead(runs)
    rb_m, ro_m = median(rb), median(ro)
    row = Row(f"studio: per-request render, {w}x{h} photo, model excluded", ro_m, rb_m, "s",
              baseline_name="raw exports only (write_outputs)",
              notes="3D view, exports, GLB + PLY, normals, slider")
    table = markdown_table(
        [f"per request, {w}x{h} photo, model excluded (median)", "seconds"],
        [["raw exports only: write_outputs (baseline)", fmt_num(rb_m)],
         ["Studio render: 3D view, exports, GLB + PLY, normals, slider", fmt_num(ro_m)],
         ["ratio", f"{ro_m / rb_m:.2f}x"]], "lr")
    return row, table


def run(quick: bool = False) -> Section:
    """Summary rows and detail for ``python -m bench`` (quick: one run, no build-only part)."""
    runs = 1 if quick else 3
    rows, serve = start_rows(runs)
    parts = [f"Fresh processes, {runs} run(s) each, alternating, medians.\n",
             markdown_table(["start to first response (median s)", "bare gradio", "depthweb",
                             "ratio"], serve, "lrrr")]
    if not quick:  # build only: two more process launches per run
        base, ours = startup(runs)
        mb, mo = median(base), median(ours)
        rows.append(Row("app start: import + assemble the server (no serving)", mo, mb, "s",
                        baseline_name="import gradio + Blocks with 3 empty tabs"))
        parts += ["", markdown_table(["start-up, import + build only (median s)", "seconds"],
                                     [["gradio import + 3 empty tabs (baseline)", fmt_num(mb)],
                                      ["depthweb import + assemble the server", fmt_num(mo)],
                                      ["ratio", f"{mo / mb:.2f}x"]], "lr")]
    if PHOTO.exists():
        row, table = render_rows(2 if quick else 5)
        rows.append(row)
        parts += ["", table]
    return Section("app_start", "App start to first response, and per-request Studio work",
                   f"python -m bench.bench_app_start --runs {runs}", rows, "\n".join(parts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--no-serve", action="store_true",
                        help="skip start to first response (launching servers)")
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}")
    if not args.no_serve:
        _, lines = start_rows(args.runs)
        print("\n" + markdown_table(["start to first response (median s)", "bare gradio",
                                     "depthweb", "ratio"], lines, "lrrr"))
    base, ours = startup(args.runs)
    mb, mo = statistics.median(base), statistics.median(ours)
    print("\n| start-up (fresh process, median) | seconds |\n|---|---|")
    print(f"| gradio import + 3 empty tabs (baseline) | {mb:.2f} |")
    print(f"| depthweb import + assemble the server | {mo:.2f} |")
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
