"""Video depth on synthetic ray-cast clips with exact depth: flicker and AbsRel of the stabilised
sequence against per-frame prediction, and throughput against a plain per-frame loop.

Clips: :func:`depthweb.training.synthetic_clip.render_clip` (indoor rooms, a camera moving
forward and turning; exact depth per frame). Model: the bundled ``depthweb-student`` (relative
inverse depth). Both sequences get **one** scale and shift for the whole clip (least squares in
disparity against the true disparity, clipped to the clip's true disparity range); then:

- flicker: mean ``|d_t - d_{t-1}| / d_{t-1}`` of that disparity over pixels whose true depth
  changes by < 1 % between the two frames (:func:`depthweb.geometry.temporal.temporal_flicker`);
- its local part: the same after the best scale and shift of each frame onto the previous one
  (:func:`~depthweb.geometry.temporal.local_flicker`); global part = flicker - local part;
- AbsRel of ``1 / disparity`` against the true depth, every valid pixel of every frame.

The same run also measures, as references for what the numbers can reach: the stabiliser with
the flow-warped reference (``StabiliseConfig(reference="flow")``, DIS optical flow; its flow
time per frame is reported), and the stabiliser fed the **exact** disparity (a perfect
per-frame model): whatever it changes there is real motion it mistook for jitter. A stabiliser
that removed all of the global part would reach the per-frame *local* flicker.

Throughput: ``process_video`` end to end (decode, batched inference, stabilisation, VP9 encode,
writes) against a loop calling ``predict_images`` on one frame at a time, same frames.

    python -m bench.bench_video [--quick]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from bench.common import Row, Section, fmt_num, markdown_table, median
from depthweb.config import Settings
from depthweb.geometry.align import fit_scale_shift
from depthweb.geometry.temporal import local_flicker, stable_pixels, temporal_flicker

MODEL = "depthweb-student"


def clip_scores(values: np.ndarray, depth: np.ndarray) -> dict[str, float]:
    """Flicker (total, local, global) and AbsRel of disparity-like ``values`` (T, H, W)
    after one whole-clip alignment to the true ``depth`` (T, H, W, metres, inf = none)."""
    with np.errstate(divide="ignore"):
        true_disp = np.where(np.isfinite(depth) & (depth > 0), 1.0 / depth, np.nan)
    valid = np.isfinite(true_disp) & np.isfinite(values)
    s, b = fit_scale_shift(values, true_disp, valid)
    lo, hi = np.nanmin(true_disp), np.nanmax(true_disp)
    aligned = np.clip(s * values + b, lo, hi)
    stable = stable_pixels(depth)
    total, local = temporal_flicker(aligned, stable), local_flicker(aligned, stable)
    absrel = float(np.mean(np.abs(1.0 / aligned[valid] - depth[valid]) / depth[valid]))
    return {"flicker": total, "local": local, "global": max(total - local, 0.0),
            "absrel": absrel, "stable_fraction": float(stable.mean())}


def quality(seed: int, frames: int) -> dict[str, dict[str, float]]:
    from depthweb.geometry.temporal import StabiliseConfig
    from depthweb.services.video import dense_flows, predict_clip, stabilise
    from depthweb.training.synthetic_clip import render_clip

    clip = render_clip(seed, frames, outdoor=False)
    results = predict_clip(clip.rgb, MODEL, settings=Settings())
    per_frame = np.stack([r.depth for r in results])
    stabilised, fits = stabilise(results, clip.rgb)
    flow_stabilised, _ = stabilise(results, clip.rgb, StabiliseConfig(reference="flow"))
    t0 = time.perf_counter()
    dense_flows(clip.rgb)  # timed alone: what the flow reference adds per frame
    flow_s = (time.perf_counter() - t0) / len(results)
    with np.errstate(divide="ignore"):
        exact = np.where(np.isfinite(clip.depth), 1.0 / clip.depth, np.nan).astype(np.float32)
    exact_results = [replace(r, depth=d) for r, d in zip(results, exact, strict=True)]
    exact_stabilised, _ = stabilise(exact_results, clip.rgb)
    # the same predictions with a per-frame scale and shift jitter added (+-10 % of the scale,
    # +-5 % of the median as shift), as image models with less consistent outputs show
    rng = np.random.default_rng(seed)
    scale = rng.uniform(0.9, 1.1, (len(results), 1, 1))
    shift = rng.uniform(-0.05, 0.05, (len(results), 1, 1)) * np.nanmedian(per_frame)
    jittered = [replace(r, depth=r.depth * s + b) for r, s, b in zip(results, scale, shift,
                                                                     strict=True)]
    jit_stabilised, _ = stabilise(jittered, clip.rgb)
    return {"per_frame": clip_scores(per_frame, clip.depth),
            "stabilised": clip_scores(stabilised, clip.depth),
            "jitter_per_frame": clip_scores(np.stack([r.depth for r in jittered]), clip.depth),
            "jitter_stabilised": clip_scores(jit_stabilised, clip.depth),
            "flow_stabilised": clip_scores(flow_stabilised, clip.depth),
            "exact": clip_scores(exact, clip.depth),
            "exact_stabilised": clip_scores(exact_stabilised, clip.depth),
            "segments": {"n": float(sum(f.reset for f in fits)), "flow_s": flow_s}}


def throughput(frames: int, runs: int) -> tuple[float, float, int]:
    """(ours fps, per-frame loop fps, frames): medians over ``runs``."""
    from depthweb.services.predict import predict_images
    from depthweb.services.video import process_video
    from depthweb.services.video_io import decode_video, encode_webm
    from depthweb.training.synthetic_clip import render_clip

    clip = render_clip(11, frames, outdoor=False)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "clip.webm"
        src.write_bytes(encode_webm(clip.rgb, clip.fps, crf=18))
        decoded = decode_video(src, settings=Settings())
        predict_images([decoded.frames[0]], MODEL)  # load the model once, outside the timing
        ours, loop = [], []
        for i in range(runs):
            t0 = time.perf_counter()
            process_video(src, MODEL, Path(tmp) / f"out{i}", settings=Settings())
            ours.append(len(decoded) / (time.perf_counter() - t0))
            t0 = time.perf_counter()
            for frame in decoded.frames:
                predict_images([frame], MODEL)
            loop.append(len(decoded) / (time.perf_counter() - t0))
    return median(ours), median(loop), len(decoded)


def detail_tables(scores: dict) -> tuple[str, str]:
    """Per-clip markdown tables: the student as is, and with injected jitter."""
    table = markdown_table(
        ["clip (seed)", "flicker per-frame", "flicker stabilised", "global per-frame",
         "global stabilised", "AbsRel per-frame", "AbsRel stabilised", "stable px"],
        [[str(seed), *(f"{s[w][k]:.4f}" for k in ("flicker",) for w in ("per_frame",
                                                                         "stabilised")),
          *(f"{s[w]['global']:.5f}" for w in ("per_frame", "stabilised")),
          *(f"{s[w]['absrel']:.4f}" for w in ("per_frame", "stabilised")),
          f"{s['per_frame']['stable_fraction']:.0%}"] for seed, s in scores.items()],
        "lrrrrrrr")
    jitter = markdown_table(
        ["clip (seed)", "flicker jittered", "flicker stabilised", "global jittered",
         "global stabilised", "AbsRel jittered", "AbsRel stabilised"],
        [[str(seed), *(f"{s[w][k]:.4f}" for k in ("flicker", "global", "absrel")
                       for w in ("jitter_per_frame", "jitter_stabilised"))]
         for seed, s in scores.items()], "lrrrrrr")
    return table, jitter


def run(quick: bool = False) -> Section:
    """Summary rows and detail for ``python -m bench`` (quick: 1 clip of 8 frames, 1 run)."""
    import torch

    seeds, frames, runs = ([3], 8, 1) if quick else ([3, 5, 6, 7, 8], 24, 3)
    scores = {seed: quality(seed, frames) for seed in seeds}
    keys = ("flicker", "global", "local", "absrel")
    med = {which: {k: median(s[which][k] for s in scores.values()) for k in keys}
           for which in ("per_frame", "stabilised", "jitter_per_frame", "jitter_stabilised",
                         "flow_stabilised", "exact", "exact_stabilised")}
    flow_ms = 1000 * median(s["segments"]["flow_s"] for s in scores.values())
    ours_fps, loop_fps, n = throughput(frames, runs)
    pf, st, fl = med["per_frame"], med["stabilised"], med["flow_stabilised"]
    removed = 1 - st["global"] / pf["global"] if pf["global"] > 0 else float("nan")
    share = pf["global"] / pf["flicker"]
    half_met = st["flicker"] <= 0.5 * pf["flicker"]
    rows = [
        Row("video: flicker of the stabilised clip (disparity)", st["flicker"], pf["flicker"],
            "rel", baseline_name="per-frame prediction, same clips",
            notes=f"target <= 0.5x {'MET' if half_met else 'NOT MET'}; global part "
                  f"{share:.0%} of per-frame flicker, so removing all of it would reach "
                  f"{pf['local'] / pf['flicker']:.2f}x"),
        Row("video: global part of the flicker", st["global"], pf["global"], "rel",
            baseline_name="per-frame prediction",
            notes=f"{removed:.0%} of it removed; target (global part < half) >= 90 % "
                  f"{'MET' if removed >= 0.9 else 'NOT MET'}"),
        Row("video: flicker, flow-warped reference (DIS flow)", fl["flicker"], pf["flicker"],
            "rel", baseline_name="per-frame prediction",
            notes=f"global part {fl['global']:.5f} ({1 - fl['global'] / pf['global']:.0%} "
                  f"removed), AbsRel {fl['absrel']:.4f}; flow {flow_ms:.0f} ms/frame extra"),
        Row("video: exact disparity through the stabiliser, AbsRel",
            med["exact_stabilised"]["absrel"], med["exact"]["absrel"], "AbsRel",
            baseline_name="exact disparity (0 error)",
            notes=f"flicker {med['exact']['flicker']:.5f} -> "
                  f"{med['exact_stabilised']['flicker']:.5f}: real motion taken for jitter"),
        Row("video: AbsRel after one whole-clip alignment", st["absrel"], pf["absrel"], "AbsRel",
            baseline_name="per-frame prediction"),
        Row("video: flicker with injected per-frame jitter", med["jitter_stabilised"][
            "flicker"], med["jitter_per_frame"]["flicker"], "rel",
            baseline_name="student + random scale/shift per frame, unstabilised",
            notes=f"global part {med['jitter_per_frame']['global']:.4f} -> "
                  f"{med['jitter_stabilised']['global']:.4f}"),
        Row(f"video: throughput, {n} frames 192x256 end to end", ours_fps, loop_fps, "fps",
            better="higher", baseline_name="predict_images one frame at a time (no decode, "
                                           "stabilisation, encode or writes)"),
    ]
    table, jitter = detail_tables(scores)
    reference = markdown_table(
        ["clip (seed)", "flicker flow-ref", "global flow-ref", "AbsRel flow-ref",
         "flicker exact", "flicker exact stabilised", "AbsRel exact stabilised"],
        [[str(seed), f"{s['flow_stabilised']['flicker']:.4f}",
          f"{s['flow_stabilised']['global']:.5f}", f"{s['flow_stabilised']['absrel']:.4f}",
          f"{s['exact']['flicker']:.4f}", f"{s['exact_stabilised']['flicker']:.4f}",
          f"{s['exact_stabilised']['absrel']:.4f}"] for seed, s in scores.items()], "lrrrrrr")
    detail = (f"{len(seeds)} indoor clips of {frames} frames (192x256), model {MODEL}, torch "
              f"{torch.__version__} ({torch.get_num_threads()} threads). Medians over clips: "
              f"flicker {fmt_num(pf['flicker'])} -> {fmt_num(st['flicker'])}, global part "
              f"{fmt_num(pf['global'])} -> {fmt_num(st['global'])}, AbsRel "
              f"{fmt_num(pf['absrel'])} -> {fmt_num(st['absrel'])}; throughput "
              f"{ours_fps:.2f} fps (ours) vs {loop_fps:.2f} fps (loop), median of {runs}.\n\n"
              f"{table}\n\nThe same predictions with a random scale (+-10 %) and shift (+-5 % of "
              f"the median) added per frame, then stabilised:\n\n{jitter}\n\nReferences, same "
              f"clips: the flow-warped reference (DIS optical flow, {flow_ms:.0f} ms/frame for "
              f"the flow alone), and the exact disparity fed through the default stabiliser "
              f"(a perfect per-frame model; its own flicker is the true change on the "
              f"'stable' pixels):\n\n{reference}")
    return Section("video", "Video: stabilised vs per-frame depth, throughput",
                   "python -m bench --only video", rows, detail)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    section = run(quick=ap.parse_args().quick)
    for row in section.rows:
        print(f"{row.name}: ours {fmt_num(row.ours)} vs {fmt_num(row.baseline)} {row.unit} "
              f"({row.baseline_name}) {row.notes}")
    print(section.detail)


if __name__ == "__main__":
    main()
