"""Prove the loop (issue 15): does a round of review make a better student, and how much?

Domain shift the ray-caster renders with exact depth: the **teacher** is a compact student
trained from scratch on indoor rooms only; the unlabeled images **B** are outdoor streets (their
exact depth kept aside). With the project's own pieces, end to end: the Admin tab's import and
pseudo-labelling (``run_import``, ``run_pseudo_label``), simulated reviewers acting through the
Review tab's service calls (:mod:`bench.loop_reviewers`: rejects, far fills of the sky, ignore
masks on the worst regions, plane fills, local ordinal pairs; every action a revision in the
database), ``depthweb export`` (``export_dataset``), ``depthweb train`` (``train_student``), and
evaluation of the registered models (``evaluate_backend``) on held-out B images.

Every student fine-tunes the teacher's weights (``TrainConfig.init_from``)
for the same number of steps, with the same config, on:

- **raw**: the export with no review (every label an unreviewed pseudo-label: the recipe's
  top-10 % loss ignore, strong perturbations, CutMix, weight 0.5);
- **reviewed**: the export after the reviewers went through the whole pool (corrected labels,
  approved labels, rejected images left out);
- **truth**: the pool's exact depth imported as ground truth (``depthweb import-depth``): the
  ceiling;
- the curve: the export after 0, 25, 50, 100, 200 reviewed images (the review queue's order:
  most uncertain first), one seed.

Held-out B: AbsRel and delta1 after the least-squares scale and shift in disparity (the
project's evaluation protocol; KITTI-style: every pixel with a depth up to 80 m, sky not
scored). Three seeds (the students' training seeds: data order, flips, perturbations) for the
final comparison. The verdict is computed, never written by hand: the reviewed student "beats"
a baseline when its mean AbsRel is lower by more than the seed spread (the largest max-min
range of the two over seeds). Scale anchors are reported apart (:func:`anchor_readout`).

    python -m bench.bench_loop [--quick] [--docs] [--out DIR] [--work DIR] [--render-only]

``--docs`` writes ``docs/loop.md`` (README-ready: method, tables, verdict, the curve, command and
machine, then the hand-written ``bench/notes/loop.md``), ``docs/loop.json`` and
``docs/loop_curve.png``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench import loop_experiment as ex
from bench.common import DATA, REPO, Row, Section, cpu_model, fmt_num, markdown_table
from bench.loop_plot import curve_png
from bench.loop_reviewers import Budget, Reviewer

COMMAND = "python -m bench.bench_loop"
DOCS = REPO / "docs"
NOTES = REPO / "bench" / "notes" / "loop.md"


def _student(settings, work, sizes, export_dir, name, seed, teacher, samples) -> dict:
    """Fine-tune, evaluate on held-out B and store the numbers beside the teacher's in the
    student's ``meta.json`` (the Train tab shows them with the data version)."""
    from depthweb.training import registry

    teacher_dir = registry.get_student(teacher["name"], settings).path
    run = ex.fine_tune(settings, work, sizes, export_dir, name, seed, teacher_dir)
    scores = ex.evaluate(settings, name, samples)
    registry.record_metrics(name, "eval", {
        "data": [ex.HELDOUT], "student": {ex.HELDOUT: scores},
        "teacher": {ex.HELDOUT: teacher["scores"]}, "teacher_model": teacher["name"],
        "teacher_error": None}, settings)
    return {**run, "seed": seed, **scores}


def experiment(sizes: ex.Sizes, budget: Budget, work: Path, *, real: bool = True
               ) -> dict[str, Any]:
    """Run the whole experiment in ``work``; return every number of the report."""
    import torch

    from depthweb.config import Settings

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    settings = Settings(data_dir=work / "data", device="cpu")
    teacher = ex.train_teacher(settings, work, sizes)
    ctx, names = ex.open_store(settings, sizes.reviewers)
    try:
        pool = ex.render_frames(work / "images" / "pool", "street", 1001, sizes.pool, sizes)
        held = ex.render_frames(work / "images" / "heldout", "heldout", 2002, sizes.heldout,
                                sizes)
        samples = ex.eval_samples(held)
        scores = ex.evaluate(settings, teacher, samples)
        parent = {"name": teacher, "scores": scores}
        labelling = ex.import_and_label(ctx, pool, ex.DATASET, teacher)
        ex.import_truth(ctx, pool, work)
        reviewers = [Reviewer(ctx, n, ex.DATASET, pool.depth, budget, seed=k)
                     for k, n in enumerate(names)]
        exports, done = {}, 0
        for n in sizes.curve:
            done = ex.review_until(reviewers, n, done)
            exports[n] = ex.export(ctx, ex.DATASET, f"reviewed-{n}")
        truth_export = ex.export(ctx, ex.GT_DATASET, "truth")
        t_review = time.perf_counter() - t0

        args = (settings, work, sizes)
        first, last = sizes.curve[0], sizes.curve[-1]
        curve = [_student(*args, exports[n], f"loop-n{n}-s{sizes.seeds[0]}", sizes.seeds[0],
                          parent, samples) | {"reviewed": n} for n in sizes.curve]
        raw = [curve[0]] + [_student(*args, exports[first], f"loop-n{first}-s{s}", s,
                                     parent, samples) for s in sizes.seeds[1:]]
        reviewed = [curve[-1]] + [_student(*args, exports[last], f"loop-n{last}-s{s}", s,
                                           parent, samples) for s in sizes.seeds[1:]]
        truth = [_student(*args, truth_export, f"loop-truth-s{s}", s, parent, samples)
                 for s in sizes.seeds]
        out: dict[str, Any] = {
            "sizes": asdict(sizes), "budget": asdict(budget), "labelling": labelling,
            "teacher": scores,
            "raw": raw, "reviewed": reviewed, "truth": truth, "curve": curve,
            "review_actions": _merged([r.counts for r in reviewers]),
            "reviewed_images": done,
            "teacher_absrel_seen_by_reviewers": ex.spread(
                [a for r in reviewers for a in r.absrel]),
            "revisions": ex.revision_counts(ctx, ex.DATASET),
            "anchors": ex.anchor_readout(ctx, _first(held, sizes.anchors), teacher, names[0]),
            "real": _real(settings, [teacher, raw[0]["name"], reviewed[0]["name"],
                                     truth[0]["name"]]) if real else {},
            "seconds": {"teacher_and_review": round(t_review, 1)},
        }
    finally:
        ctx.close()
    out["seconds"]["total"] = round(time.perf_counter() - t0, 1)
    out["verdict"] = verdict(out)
    return out


def _merged(counters) -> dict[str, int]:
    total: dict[str, int] = {}
    for c in counters:
        for k, v in c.items():
            total[k] = total.get(k, 0) + int(v)
    return dict(sorted(total.items()))


def _first(frames: ex.Frames, n: int) -> ex.Frames:
    stems = list(frames.depth)[:n]
    return ex.Frames([p for p in frames.paths if p.stem in stems],
                     {s: frames.depth[s] for s in stems}, {s: frames.rgb[s] for s in stems},
                     {s: frames.intrinsics[s] for s in stems})


def _real(settings, models: list[str]) -> dict[str, Any]:
    """The last round's models on the real NYU / KITTI frames of ../shared/data (a handful of
    frames: a sanity readout, not a benchmark)."""
    from depthweb.services.evaluation import load_samples

    out: dict[str, Any] = {}
    for name in ("nyu", "kitti"):
        folder = DATA / name
        if not (folder / "test_annotations.json").is_file():
            continue
        samples = load_samples(folder)
        out[name] = {"frames": len(samples),
                     "models": {m: ex.evaluate(settings, m, samples) for m in models}}
    return out


def verdict(r: dict[str, Any]) -> dict[str, Any]:
    """Whether the reviewed student beats the teacher and the raw student by more than the
    seed spread (AbsRel), and whether the ground-truth student bounds both."""
    rev = ex.spread([s["abs_rel"] for s in r["reviewed"]])
    raw = ex.spread([s["abs_rel"] for s in r["raw"]])
    gt = ex.spread([s["abs_rel"] for s in r["truth"]])
    teacher = r["teacher"]["abs_rel"]
    spread = max(rev["max"] - rev["min"], raw["max"] - raw["min"])
    out = {"seed_spread": spread, "spread_raw": spread,
           "spread_teacher": rev["max"] - rev["min"],
           "margin_vs_raw": raw["mean"] - rev["mean"],
           "margin_vs_teacher": teacher - rev["mean"],
           "truth_bounds_both": gt["mean"] <= min(rev["mean"], raw["mean"])}
    out["beats_raw"] = out["margin_vs_raw"] > spread
    out["beats_teacher"] = out["margin_vs_teacher"] > out["spread_teacher"]
    return out


def verdict_text(r: dict[str, Any]) -> str:
    v, n = r["verdict"], len(r["reviewed"])
    parts = []
    for key, who in (("raw", "the student on raw pseudo-labels"), ("teacher", "the teacher")):
        margin, spread = v[f"margin_vs_{key}"], v[f"spread_{key}"]
        if v[f"beats_{key}"]:
            parts.append(f"The reviewed student **beats {who}**: AbsRel lower by "
                         f"{margin:.4f}, more than the spread over {n} seeds ({spread:.4f}).")
        else:
            parts.append(f"The reviewed student **does not beat {who}** by more than the seed "
                         f"spread: AbsRel margin {margin:+.4f} against a spread of "
                         f"{spread:.4f} over {n} seeds.")
    parts.append("The ground-truth student bounds both." if v["truth_bounds_both"] else
                 "The ground-truth student does **not** bound both (its mean AbsRel is not the "
                 "lowest): the fine-tuning budget, not the labels, limits these students.")
    return " ".join(parts)


def _row(name: str, runs: list[dict]) -> list[str]:
    a = ex.spread([s["abs_rel"] for s in runs])
    d = ex.spread([s["delta1"] for s in runs])
    return [name, f"{a['mean']:.4f} ({a['min']:.4f}-{a['max']:.4f})",
            f"{d['mean']:.4f} ({d['min']:.4f}-{d['max']:.4f})", str(len(runs))]


def tables(r: dict[str, Any]) -> str:
    t = r["teacher"]
    main = markdown_table(
        ["model (held-out B: outdoor streets)", "AbsRel mean (min-max)", "delta1 mean (min-max)",
         "seeds"],
        [[f"teacher (rooms only, {ex.TEACHER})", f"{t['abs_rel']:.4f}", f"{t['delta1']:.4f}", "-"],
         _row("student on raw pseudo-labels (the recipe)", r["raw"]),
         _row(f"student on reviewed labels ({r['reviewed_images']} images)", r["reviewed"]),
         _row("student on ground truth (ceiling)", r["truth"])], "lrrr")
    curve = markdown_table(["reviewed images", "AbsRel", "delta1"],
                           [[c["reviewed"], f"{c['abs_rel']:.4f}", f"{c['delta1']:.4f}"]
                            for c in r["curve"]], "rrr")
    acts = markdown_table(["review action", "count"], list(r["review_actions"].items()), "lr")
    revs = markdown_table(["revision in the database", "count"], list(r["revisions"].items()),
                          "lr")
    a = r["anchors"]
    anchors = (f"Scale anchors, apart ({a['images']} held-out images with three true depths "
               f"each; {a['refused']} fits refused by the service as not metric): the "
               f"anchored label read as metres scores AbsRel {a['metric_abs_rel']:.4f} with no "
               f"alignment; the same label after the oracle scale and shift scores "
               f"{a['aligned_abs_rel']:.4f}. Training is scale-and-shift invariant, so anchors "
               "change nothing the relative students learn; they matter for metric students and "
               "metric readouts.")
    real = ""
    for name, res in (r.get("real") or {}).items():
        real += f"\n\nReal {name.upper()} frames ({res['frames']}, small: a sanity readout):\n\n"
        real += markdown_table(["model", "AbsRel", "delta1"],
                               [[m, f"{v['abs_rel']:.4f}", f"{v['delta1']:.4f}"]
                                for m, v in res["models"].items()], "lrr")
    return (f"{main}\n\n{verdict_text(r)}\n\nAbsRel against the number of reviewed images "
            f"(seed {r['curve'][0]['seed']}):\n\n{curve}\n\n{acts}\n\n{revs}\n\n{anchors}{real}")


def section(r: dict[str, Any], quick: bool, seconds: float) -> Section:
    rev = ex.spread([s["abs_rel"] for s in r["reviewed"]])["mean"]
    raw = ex.spread([s["abs_rel"] for s in r["raw"]])["mean"]
    gt = ex.spread([s["abs_rel"] for s in r["truth"]])["mean"]
    d_rev = ex.spread([s["delta1"] for s in r["reviewed"]])["mean"]
    d_raw = ex.spread([s["delta1"] for s in r["raw"]])["mean"]
    n = f"mean of {len(r['reviewed'])} seeds"
    rows = [Row("loop: reviewed student AbsRel (held-out B)", rev, raw, "AbsRel",
                baseline_name="student on raw pseudo-labels", notes=n),
            Row("loop: reviewed student AbsRel vs teacher", rev, r["teacher"]["abs_rel"],
                "AbsRel", baseline_name="teacher (rooms only)", notes=n),
            Row("loop: reviewed student delta1 (held-out B)", d_rev, d_raw, "delta1",
                better="higher", baseline_name="student on raw pseudo-labels", notes=n),
            Row("loop: ground-truth ceiling AbsRel", gt, rev, "AbsRel",
                baseline_name="student on reviewed labels", notes=n)]
    return Section("loop", "The loop: a review round against raw pseudo-labels (synthetic "
                   "rooms -> streets)", COMMAND + (" --quick" if quick else ""), rows,
                   tables(r), seconds=seconds)


def write_report(r: dict[str, Any], sec: Section, out: Path, png_name: str,
                 notes_file: bool = False) -> Path:
    """``loop.json``, the curve PNG and ``loop.md`` (README-ready) into ``out``; with
    ``notes_file`` the hand-written reading of the numbers (``bench/notes/loop.md``) follows."""
    out.mkdir(parents=True, exist_ok=True)
    ex.write_json(out / "loop.json", r)
    gt = ex.spread([s["abs_rel"] for s in r["truth"]])["mean"]
    curve_png(out / png_name, [c["reviewed"] for c in r["curve"]],
              [c["abs_rel"] for c in r["curve"]], title="Held-out streets: AbsRel vs reviewed "
              "images (lower is better)", xlabel="reviewed images",
              ylabel="AbsRel", levels={"teacher": r["teacher"]["abs_rel"], "truth": gt})
    notes = NOTES.read_text().strip() if notes_file and NOTES.is_file() else ""
    md = (f"## The loop, measured\n\n{_method(r)}\n\n{sec.detail}\n\n![AbsRel against reviewed "
          f"images]({png_name})\n\n{_facts(sec, r)}\n" + (f"\n{notes}\n" if notes else ""))
    (out / "loop.md").write_text(md)
    return out / "loop.md"


def _method(r: dict[str, Any]) -> str:
    s, b = r["sizes"], r["budget"]
    return (f"A teacher trained only on rendered indoor rooms ({s['teacher_scenes']} scenes, "
            f"{s['teacher_steps']} steps) pseudo-labels {s['pool']} rendered outdoor streets; "
            f"{s['reviewers']} simulated reviewers go "
            "through them with the Review tab's service calls, using the exact depth: reject "
            f"when the label's aligned AbsRel is over {b['reject_absrel']}, far-fill the sky, "
            f"mask the worst {b['tile']}x{b['tile']} tiles (error over {b['mask_error']}, at "
            f"most {b['mask_fraction']:.0%} of the image), up to {b['planes']} plane fill "
            f"(undone when it made things worse) and up to {b['pairs']} local ordinal pairs per "
            "image, then approve. Every student fine-tunes the teacher's weights for "
            f"{s['steps']} steps ({s['height']}x{s['width']}, batch {s['batch']}) on an export "
            f"and is scored on {s['heldout']} held-out streets (AbsRel, delta1 after the "
            "least-squares scale and shift in disparity; sky not scored).")


def _facts(sec: Section, r: dict[str, Any]) -> str:
    import torch

    return (f"Command: `{sec.command}`; {r['seconds']['total'] / 60:.1f} min on {cpu_model()} "
            f"({os.cpu_count()} cores), torch {torch.__version__}, one thread, "
            "no GPU.")


def run(quick: bool = False, out: Path | None = None, work: Path | None = None,
        docs: bool = False) -> Section:
    """The benchmark (``python -m bench`` entry): quick = tiny sizes, two seeds, no real data."""
    sizes = ex.QUICK if quick else ex.FULL
    budget = Budget()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-loop-") as tmp:
        r = experiment(sizes, budget, Path(work or tmp), real=not quick)
    sec = section(r, quick, time.perf_counter() - t0)
    if docs:
        write_report(r, sec, DOCS, "loop_curve.png", notes_file=True)
    if out is not None:
        write_report(r, sec, out, "loop_curve.png")
    bad = [k for k in ("raw", "reviewed", "truth") for s in r[k]
           if not (math.isfinite(s["abs_rel"]) and math.isfinite(s["delta1"]))]
    if bad:
        sec.error = f"non-finite metrics in {', '.join(sorted(set(bad)))}"
    return sec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes (CI, about a minute)")
    ap.add_argument("--docs", action="store_true",
                    help="write docs/loop.md, docs/loop.json and docs/loop_curve.png")
    ap.add_argument("--out", type=Path, help="also write the report into this folder")
    ap.add_argument("--work", type=Path, help="keep the database, exports and runs here")
    ap.add_argument("--render-only", action="store_true",
                    help="rewrite docs/loop.md and the curve from docs/loop.json (after editing "
                         "bench/notes/loop.md); measures nothing")
    args = ap.parse_args()
    if args.render_only:
        r = json.loads((DOCS / "loop.json").read_text())
        md = write_report(r, section(r, False, r["seconds"]["total"]), DOCS, "loop_curve.png",
                          notes_file=True)
        print(f"wrote {md}")
        return
    sec = run(args.quick, args.out, args.work, args.docs)
    for row in sec.rows:
        print(f"{row.name}: {fmt_num(row.ours)} vs {fmt_num(row.baseline)} {row.unit} "
              f"({row.baseline_name}; {row.notes})")
    print(sec.detail)
    print(f"{sec.seconds / 60:.1f} min")


if __name__ == "__main__":
    main()
