"""Stereo timings on Middlebury, each against a baseline measured in the same run.

1. ``stereo_depth`` against one bare ``cv2.StereoSGBM.compute`` with the same matcher settings
   (no border padding, no right-view pass, no left-right check, no depth conversion, no
   rectified-input check): the price of those.
2. The rectified-input check alone (SIFT matches, their median vertical offset) against
   ``stereo_depth`` without it.
3. Rectification from features (SIFT on the pair, MAGSAC fundamental matrix,
   ``stereoRectifyUncalibrated``, remapping, matching over the inliers' disparity range, results
   resampled back to the original left view) on the pair with its right view warped by a small
   rotation and a 3 px vertical shift, against ``stereo_depth`` without the check on the
   original, already rectified pair.

Prints a table; writes nothing.

    python -m bench.bench_stereo [--runs 15] [--scenes Adirondack Motorcycle]   # from the repo root
"""

from __future__ import annotations

import argparse
import os
import platform
from pathlib import Path

import cv2
import numpy as np

from bench.common import Row, Section, fmt_num, markdown_table, median_ms
from depthweb.imaging import load_image
from depthweb.models.rectify import rectify_uncalibrated
from depthweb.models.stereo import (
    SGBMParams,
    StereoCalib,
    default_num_disparities,
    make_matcher,
    rectification_note,
    stereo_depth,
)
from depthweb.models.stereo_rectified import stereo_unrectified
from depthweb.types import Intrinsics

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "middlebury"
COLUMNS = ["scene", "size", "bare SGBM ms", "stereo_depth ms", "ratio", "row check ms",
           "no-check ms", "rectify+match ms", "ratio vs rectified", "valid"]


def warped_right(right: np.ndarray, calib: StereoCalib) -> np.ndarray:
    """The right view rotated 1 deg about the optical axis and 0.5 deg about x, shifted 3 px."""
    f = calib.focal_px
    k = np.array([[f, 0, calib.cx or right.shape[1] / 2], [0, f, calib.cy or right.shape[0] / 2],
                  [0, 0, 1]])
    rot = cv2.Rodrigues(np.deg2rad([0.5, 0.0, 1.0]))[0]
    hmat = np.array([[1, 0, 0], [0, 1, 3.0], [0, 0, 1]]) @ k @ rot @ np.linalg.inv(k)
    return cv2.warpPerspective(right, hmat, (right.shape[1], right.shape[0]))


def bench_scene(scene: str, runs: int) -> dict:
    folder = DATA / scene
    calib = StereoCalib.from_middlebury(folder / "calib.txt")
    left, right = load_image(folder / "im0.png").rgb, load_image(folder / "im1.png").rgb
    h, w = left.shape[:2]
    matcher = make_matcher(SGBMParams(), 0, default_num_disparities(w, calib), 3)
    warped = warped_right(right, calib)
    intr = Intrinsics.from_fov(w, h, 60.0)

    def rectify_and_match():
        return stereo_unrectified(left, warped, rectify_uncalibrated(left, warped), intr)

    return {
        "scene": scene, "size": f"{w}x{h}",
        "bare": median_ms(lambda: matcher.compute(left, right), runs),
        "ours": median_ms(lambda: stereo_depth(left, right, calib), runs),
        "check": median_ms(lambda: rectification_note(left, right), runs),
        "no_check": median_ms(lambda: stereo_depth(left, right, calib, check_rows=False), runs),
        "rectified": median_ms(rectify_and_match, runs),
        "valid": stereo_depth(left, right, calib, check_rows=False).depth.valid_fraction,
    }


def _rows(r: dict) -> list[Row]:
    name = f"{r['scene']} {r['size']}"
    return [
        Row(f"stereo: stereo_depth {name}", r["ours"], r["bare"], "ms",
            baseline_name="bare cv2.StereoSGBM.compute, same matcher settings",
            notes="adds padding, right-view pass, left-right check, Z = f*B/(d+doffs), "
                  "rectified-input check"),
        Row(f"stereo: rectified-input check {name}", r["check"], r["no_check"], "ms",
            baseline_name="stereo_depth without the check",
            notes="SIFT matches and their vertical offset"),
        Row(f"stereo: rectify from features + match {name}", r["rectified"], r["no_check"], "ms",
            baseline_name="stereo_depth (no check) on the already rectified pair",
            notes="right view warped 1 deg / 0.5 deg / 3 px; fundamental-matrix path"),
    ]


def _table(results: list[dict]) -> str:
    return markdown_table(COLUMNS, [
        [r["scene"], r["size"], fmt_num(r["bare"]), fmt_num(r["ours"]),
         f"{r['ours'] / r['bare']:.2f}", fmt_num(r["check"]), fmt_num(r["no_check"]),
         fmt_num(r["rectified"]), f"{r['rectified'] / r['no_check']:.2f}", f"{r['valid']:.1%}"]
        for r in results], "llrrrrrrrr")


def run(quick: bool = False) -> Section:
    """Summary rows and detail for ``python -m bench`` (quick: Adirondack, 2 runs)."""
    if not DATA.is_dir():
        raise FileNotFoundError(f"Middlebury data not found at {DATA}")
    scenes, runs = (["Adirondack"], 2) if quick else (["Adirondack", "Motorcycle"], 15)
    results = [bench_scene(scene, runs) for scene in scenes]
    detail = (f"OpenCV {cv2.__version__} ({cv2.getNumThreads()} threads), median of {runs} "
              f"runs.\n\n{_table(results)}")
    return Section("stereo", "Stereo vs the bare OpenCV call, rectification vs a rectified pair",
                   f"python -m bench.bench_stereo --runs {runs} --scenes {' '.join(scenes)}",
                   [row for r in results for row in _rows(r)], detail)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--scenes", nargs="+", default=["Adirondack", "Motorcycle"])
    args = ap.parse_args()
    if not DATA.is_dir():
        raise SystemExit(f"Middlebury data not found at {DATA}")
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"OpenCV {cv2.__version__} ({cv2.getNumThreads()} threads), median of {args.runs} runs")
    print(_table([bench_scene(scene, args.runs) for scene in args.scenes]))


if __name__ == "__main__":
    main()
