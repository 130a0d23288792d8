"""Time ``stereo_depth`` against one bare ``cv2.StereoSGBM.compute`` on the same Middlebury pair.

The bare call uses the same matcher settings but no border padding, no right-view pass, no
left-right check and no depth conversion, so the ratio is the price of those (about 2x is
expected: two SGBM passes on images widened by the disparity range). Prints a table; writes
nothing.

    python -m bench.bench_stereo [--runs 15] [--scenes Adirondack Motorcycle]   # from the repo root
"""

from __future__ import annotations

import argparse
import os
import platform
from pathlib import Path

import cv2

from bench.common import Row, Section, fmt_num, markdown_table, median_ms
from depthweb.imaging import load_image
from depthweb.models.stereo import (
    SGBMParams,
    StereoCalib,
    default_num_disparities,
    make_matcher,
    stereo_depth,
)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "middlebury"


def bench_scene(scene: str, runs: int) -> tuple[str, str, float, float, float]:
    folder = DATA / scene
    calib = StereoCalib.from_middlebury(folder / "calib.txt")
    left, right = load_image(folder / "im0.png"), load_image(folder / "im1.png")
    params = SGBMParams()
    num = default_num_disparities(left.width, calib)
    matcher = make_matcher(params, 0, num, 3)
    bare = median_ms(lambda: matcher.compute(left.rgb, right.rgb), runs)
    ours = median_ms(lambda: stereo_depth(left.rgb, right.rgb, calib), runs)
    valid = stereo_depth(left.rgb, right.rgb, calib).depth.valid_fraction
    return scene, f"{left.width}x{left.height}", bare, ours, valid


def run(quick: bool = False) -> Section:
    """Summary rows and detail for ``python -m bench`` (quick: Adirondack, 2 runs)."""
    if not DATA.is_dir():
        raise FileNotFoundError(f"Middlebury data not found at {DATA}")
    scenes, runs = (["Adirondack"], 2) if quick else (["Adirondack", "Motorcycle"], 15)
    results = [bench_scene(scene, runs) for scene in scenes]
    rows = [Row(f"stereo: stereo_depth {name} {size}", ours, bare, "ms",
                baseline_name="bare cv2.StereoSGBM.compute, same matcher settings",
                notes="adds padding, right-view pass, left-right check, Z = f*B/(d+doffs)")
            for name, size, bare, ours, _ in results]
    table = markdown_table(
        ["scene", "size", "bare SGBM ms", "stereo_depth ms", "ratio", "valid"],
        [[n, sz, fmt_num(b), fmt_num(o), f"{o / b:.2f}", f"{v:.1%}"]
         for n, sz, b, o, v in results], "llrrrr")
    detail = (f"OpenCV {cv2.__version__} ({cv2.getNumThreads()} threads), median of {runs} "
              f"runs.\n\n{table}")
    return Section("stereo", "Stereo vs the bare OpenCV call",
                   f"python -m bench.bench_stereo --runs {runs} --scenes {' '.join(scenes)}",
                   rows, detail)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--scenes", nargs="+", default=["Adirondack", "Motorcycle"])
    args = ap.parse_args()
    if not DATA.is_dir():
        raise SystemExit(f"Middlebury data not found at {DATA}")
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"OpenCV {cv2.__version__} ({cv2.getNumThreads()} threads), median of {args.runs} runs")
    print(f"| {'scene':<11} | {'size':<7} | {'bare SGBM ms':>12} | {'stereo_depth ms':>15} "
          f"| {'ratio':>5} | {'valid':>6} |")
    print(f"|{'-' * 13}|{'-' * 9}|{'-' * 14}|{'-' * 17}|{'-' * 7}|{'-' * 8}|")
    for scene in args.scenes:
        name, size, bare, ours, valid = bench_scene(scene, args.runs)
        print(f"| {name:<11} | {size:<7} | {bare:>12.1f} | {ours:>15.1f} | {ours / bare:>5.2f} "
              f"| {valid:>6.1%} |")


if __name__ == "__main__":
    main()
