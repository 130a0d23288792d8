"""Studio: time to the first picture, against the full per-request render of the same run.

1. **Server work** (in process, model excluded): on the 1500x1000 Unsplash chess photo
   (``assets/examples``) with a synthetic relative-disparity prediction,
   ``studio.first_picture`` (what a visitor sees first: slider pictures, the plotly 3D view and
   the info panel; shape rule included) against ``studio.render`` (everything: the first
   picture, then the GLB, raw exports, PLY and normals). Runs alternate. Target: <= 0.3x.
2. **In Chromium** (Debian's, Playwright): ``python app.py`` with the bundled student as the
   default model; time from the click on "Estimate depth" to the slider's two pictures being
   loaded, against the model's own forward time as the app reports it. Target: within model
   time + 0.5 s. One warm-up request first (model loading).

    python -m bench.bench_first_picture [--runs 5] [--no-browser]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import REPO, Row, Section, fmt_num, markdown_table, median

PHOTO = REPO / "assets" / "examples" / "randy-fath-G1yhU1Ej-9A-unsplash.jpg"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--headless=new", "--disable-gpu",
                 "--disable-background-networking", "--disable-dev-shm-usage"]


def server_work(runs: int) -> tuple[list[float], list[float], tuple[int, int]]:
    """(first picture s, full render s, (w, h)), alternating runs."""
    from depthweb.imaging import load_image
    from depthweb.services.studio import StudioState, first_picture, render
    from depthweb.types import DepthKind, DepthResult, Intrinsics

    rgb = load_image(PHOTO).rgb
    h, w = rgb.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    disparity = (1.0 + 0.5 * np.sin(xx / 90.0) + yy / h - 0.8).astype(np.float32)
    result = DepthResult(disparity, DepthKind.RELATIVE_DISPARITY,
                         Intrinsics.from_fov(w, h, 60), "synthetic")
    first, full = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(runs + 1):  # the first pair warms caches and lazy imports
            t0 = time.perf_counter()
            first_picture(StudioState(rgb, result, "photo"))
            t1 = time.perf_counter()
            render(StudioState(rgb, result, "photo"), Path(tmp) / f"r{i}")
            t2 = time.perf_counter()
            if i:
                first.append(t1 - t0)
                full.append(t2 - t1)
    return first, full, (w, h)


def _slider_ready(page) -> None:
    page.wait_for_function(
        """() => { const imgs = [...document.querySelectorAll('#predict-slider img')];
                   return imgs.length >= 2 && imgs.slice(0, 2).every(
                       i => i.complete && i.naturalWidth > 0); }""", timeout=300_000)


def _info_text(page) -> str:
    return page.evaluate("() => document.querySelector('#predict-info').innerText")


def _one_click(page, before: str) -> tuple[float, float]:
    """(click to slider s, model forward s) for one request; ``before``: the old info text."""
    t0 = time.perf_counter()
    page.click("#predict-run")
    page.wait_for_function(
        "(old) => { const t = document.querySelector('#predict-info').innerText;"
        " return t && t !== old; }", arg=before, timeout=300_000)
    _slider_ready(page)
    elapsed = time.perf_counter() - t0
    info = _info_text(page)
    forward = re.search(r"forward (\d+) ms", info)
    return elapsed, int(forward.group(1)) / 1000 if forward else float("nan")


def browser_times(runs: int) -> tuple[list[float], list[float]]:
    """(click to slider s, model forward s) per request, after one warm-up request."""
    from playwright.sync_api import sync_playwright

    from bench.first_response import app_env, free_port, wait_http_200

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "cwd").mkdir()
        (root / "models").mkdir()
        port = free_port()
        env = {**app_env(root, root / "models"), "DEPTHWEB_DEFAULT_MODEL": "depthweb-student",
               "GRADIO_SERVER_PORT": str(port)}
        log = root / "server.log"
        with log.open("w") as out:
            proc = subprocess.Popen([sys.executable, str(REPO / "app.py")], cwd=root / "cwd",
                                    env=env, stdout=out, stderr=subprocess.STDOUT)
            try:
                url = f"http://127.0.0.1:{port}/"
                wait_http_200(url, proc, 240, log)
                with sync_playwright() as pw:
                    browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                    page = browser.new_page(viewport={"width": 1400, "height": 1000})
                    page.set_default_timeout(300_000)
                    page.goto(url)
                    page.wait_for_selector("#predict-run", state="visible")
                    page.locator("#predict-photo input[type=file]").set_input_files(str(PHOTO))
                    page.wait_for_timeout(1000)
                    clicks, forwards = [], []
                    for i in range(runs + 1):
                        before = _info_text(page)
                        page.wait_for_timeout(1500)  # let the previous files finish
                        elapsed, forward = _one_click(page, before)
                        if i:
                            clicks.append(elapsed)
                            forwards.append(forward)
                    browser.close()
            finally:
                proc.terminate()
                proc.wait(timeout=20)
    return clicks, forwards


def run(quick: bool = False, browser: bool = True) -> Section:
    """Summary rows and detail for ``python -m bench``."""
    runs = 2 if quick else 5
    first, full, (w, h) = server_work(runs)
    fm, rm = median(first), median(full)
    rows = [Row(f"studio: time to first picture, {w}x{h} photo, model excluded", fm, rm, "s",
                baseline_name="full per-request render (first picture + GLB, exports, PLY, "
                              "normals)", notes="target <= 0.3x")]
    lines = [["full render: first picture + GLB + exports + PLY + normals (baseline)",
              fmt_num(rm)], ["first picture: slider, plotly 3D view, info", fmt_num(fm)],
             ["ratio", f"{fm / rm:.2f}x"]]
    parts = [f"{runs} alternating runs after one warm-up pair, medians.\n",
             markdown_table([f"server work per request, {w}x{h}, model excluded (median)",
                             "seconds"], lines, "lr")]
    if browser and Path(CHROMIUM).exists():
        from playwright.sync_api import Error as PlaywrightError

        try:
            clicks, forwards = browser_times(2 if quick else 3)
        except (TimeoutError, RuntimeError, PlaywrightError) as exc:
            rows.append(Row(f"studio: Chromium click to slider, {w}x{h} photo", None, None,
                            "s", skipped=f"{type(exc).__name__}: {str(exc)[:120]}"))
            return Section("first_picture", "Studio: time to the first picture",
                           f"python -m bench.bench_first_picture --runs {runs}", rows,
                           "\n".join(parts))
        cm, mm = median(clicks), median(forwards)
        rows.append(Row(f"studio: Chromium click to slider, {w}x{h} photo", cm, mm, "s",
                        baseline_name="the model's forward time (student, CPU)",
                        notes=f"target <= model + 0.5 s; here model + {cm - mm:.2f} s"))
        parts += ["", markdown_table(
            ["Chromium, click to slider (median s)", "seconds"],
            [["model forward (baseline)", fmt_num(mm)], ["click to slider", fmt_num(cm)],
             ["difference", fmt_num(cm - mm)]], "lr")]
    return Section("first_picture", "Studio: time to the first picture",
                   f"python -m bench.bench_first_picture --runs {runs}", rows, "\n".join(parts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--no-browser", action="store_true")
    args = parser.parse_args()
    first, full, (w, h) = server_work(args.runs)
    print(f"| {w}x{h}, model excluded (median s) | seconds |\n|---|---|")
    print(f"| full render (baseline) | {median(full):.3f} |")
    print(f"| first picture | {median(first):.3f} |")
    print(f"| ratio | {median(first) / median(full):.2f}x |")
    if not args.no_browser:
        clicks, forwards = browser_times(args.runs)
        print(f"\n| Chromium (median s) | seconds |\n|---|---|\n| model forward | "
              f"{median(forwards):.3f} |\n| click to slider | {median(clicks):.3f} |")


if __name__ == "__main__":
    main()
