"""Run every benchmark, print one table of ratios, write ``docs/benchmarks.md``.

    python -m bench                          # everything (10-20 min here); writes the docs
    python -m bench --quick --out /tmp/b.md  # smoke test: small repeats (never the docs)
    python -m bench --only gpu               # one or more benchmarks; merged into the docs
    python -m bench --render-only            # docs again from bench/results.json (notes edited)

Each benchmark module's ``run(quick)`` returns a :class:`~bench.common.Section`; each runs
in its own fresh Python process, one after another (never in parallel: the machine is shared
and noisy, so every ratio compares two things measured next to each other). Results are also
written as JSON beside the markdown; ``--only`` without ``--out`` replaces just those sections
in ``bench/results.json`` and regenerates ``docs/benchmarks.md`` from it. Exit status 1 when a
benchmark failed.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import shlex
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from bench import report
from bench.common import (
    REPO,
    Row,
    Section,
    cpu_model,
    gpu_name,
    load_average,
    memory_gib,
    software_versions,
    subprocess_env,
    summary_table,
)

BENCHMARKS = {  # key -> module; the order of the table and the docs
    "predict": "bench.bench_predict",
    "pseudo_label": "bench.bench_pseudo_label",
    "mesh": "bench.bench_mesh",
    "stereo": "bench.bench_stereo",
    "store": "bench.bench_store",
    "review": "bench.bench_review",
    "app_start": "bench.bench_app_start",
    "first_picture": "bench.bench_first_picture",
    "load": "bench.bench_load",
    "gpu": "bench.bench_gpu",
    "video": "bench.bench_video",
    "loop": "bench.bench_loop",
}
DOCS = REPO / "docs" / "benchmarks.md"
RESULTS = REPO / "bench" / "results.json"
CHILD_TIMEOUT_S = 3600.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="small repeats (CI smoke test); writes --out, never the docs")
    ap.add_argument("--only", nargs="+", choices=list(BENCHMARKS), metavar="NAME",
                    help=f"run only these: {', '.join(BENCHMARKS)}")
    ap.add_argument("--render-only", action="store_true",
                    help="rewrite docs/benchmarks.md from bench/results.json (after editing "
                         "bench/notes/*.md); measures nothing")
    ap.add_argument("--child", choices=list(BENCHMARKS), help=argparse.SUPPRESS)
    ap.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path,
                    help="markdown to write (JSON beside it); default docs/benchmarks.md, or a "
                         "temp file with --quick")
    return ap.parse_args(argv)


def as_section(key: str, result: Section | dict) -> Section:
    """A benchmark's result as a section; ``bench_load.run`` returns a dict (rows with name,
    ours, baseline, unit; ``table`` lines; ``ok``)."""
    if isinstance(result, Section):
        return result
    rows = [Row(f"{key}: {r['name']}", r["ours"], r["baseline"], r["unit"],
                baseline_name="1 client alone, same mix, same run",
                skipped="" if r["ours"] and r["baseline"] else "no sample in one of the phases")
            for r in result["rows"]]
    error = "" if result.get("ok", True) else "failed requests or database problems"
    return Section(key, "Load: concurrent clients on one app vs one client alone",
                   "python -m bench.bench_load", rows, fenced(result.get("table", [])),
                   error=error)


def fenced(lines: list[str]) -> str:
    """Plain-text table lines as a markdown code block ("" for none)."""
    return "```\n" + "\n".join(lines) + "\n```" if lines else ""


def run_child(key: str, quick: bool, out: Path) -> int:
    """In the child process: run one benchmark and write its section as JSON to ``out``."""
    try:
        section = as_section(key, importlib.import_module(BENCHMARKS[key]).run(quick=quick))
    except Exception as exc:  # reported in the table and the exit status, not hidden
        traceback.print_exc()
        msg = str(exc).splitlines()[0][:200] if str(exc) else ""
        section = Section(key, key, f"python -m bench --only {key}",
                          error=f"{type(exc).__name__}: {msg}".rstrip(": "))
    out.write_text(json.dumps(asdict(section)))
    return 0


def run_one(key: str, quick: bool, timeout_s: float = CHILD_TIMEOUT_S) -> Section:
    """One benchmark in a fresh Python process (its own imports, threads and memory); a
    crash, hang or exception becomes a failed section and the others still run."""
    t0, load_before = time.perf_counter(), load_average()
    with tempfile.TemporaryDirectory(prefix="bench-child-") as tmp:
        out = Path(tmp) / "section.json"
        cmd = [sys.executable, "-m", "bench.run_all", "--child", key, "--child-out", str(out)]
        cmd += ["--quick"] if quick else []
        try:
            proc = subprocess.run(cmd, cwd=REPO, env=subprocess_env(), timeout=timeout_s,
                                  check=False)
            error = "" if out.is_file() else f"benchmark process exited with {proc.returncode}"
        except subprocess.TimeoutExpired:
            error = f"timed out after {timeout_s:.0f} s"
        section = (report.section_from_dict(json.loads(out.read_text())) if not error
                   else Section(key, key, f"python -m bench --only {key}", error=error))
    section.seconds = time.perf_counter() - t0
    section.load_before, section.load_after = load_before, load_average()
    return section


def machine_facts(load_before: str) -> dict[str, str]:
    mem = memory_gib()
    facts = {
        "CPU": f"{cpu_model()}, {os.cpu_count()} cores" + (f", {mem:.0f} GiB" if mem else ""),
        "GPU": gpu_name(),
        "load average (1, 5, 15 min) before / after": f"{load_before} / {load_average()}",
    }
    facts.update({k: v for k, v in software_versions().items()})
    return facts


def output_paths(args: argparse.Namespace) -> tuple[Path, Path, bool]:
    """(markdown, json, merge with the existing json?)."""
    if args.out is not None:
        return args.out, args.out.with_suffix(".json"), False
    if args.quick:
        md = Path(tempfile.gettempdir()) / "depthweb-bench-quick.md"
        return md, md.with_suffix(".json"), False
    return DOCS, RESULTS, bool(args.only)


def write(args: argparse.Namespace, run: report.RunInfo, sections: list[Section]) -> Path:
    md, js, merge = output_paths(args)
    runs = {run.run_id: run}
    pairs = [(run.run_id, s) for s in sections]
    if merge and js.is_file():
        old_runs, old_pairs = report.from_json(js.read_text())
        pairs = report.merge(old_pairs, pairs, list(BENCHMARKS))
        runs = {**old_runs, **runs}
        runs = {rid: r for rid, r in runs.items() if any(p[0] == rid for p in pairs)}
    md.parent.mkdir(parents=True, exist_ok=True)
    md.write_text(report.render(runs, pairs))
    js.write_text(report.to_json(runs, pairs))
    return md


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        logging.basicConfig(level=logging.WARNING)
        return run_child(args.child, args.quick, args.child_out)
    if args.render_only:
        runs, pairs = report.from_json(RESULTS.read_text())
        out = args.out or DOCS
        out.write_text(report.render(runs, pairs))
        print(f"wrote {out} from {RESULTS}")
        return 0
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    keys = args.only or list(BENCHMARKS)
    argv_used = sys.argv[1:] if argv is None else argv
    run = report.RunInfo(datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                         " ".join(["python -m bench", *map(shlex.quote, argv_used)]))
    load_before, t0 = load_average(), time.perf_counter()
    sections = []
    for key in keys:
        print(f"== {key} (load average {load_average()})", flush=True)
        section = run_one(key, args.quick)
        sections.append(section)
        print(summary_table(report.table_rows([("", section)])), flush=True)
        print(f"   {section.seconds:.0f} s", flush=True)
    run.duration_s = time.perf_counter() - t0
    run.facts = machine_facts(load_before)
    print(f"\n{run.command}: {run.duration_s / 60:.1f} min, {run.facts['CPU']}, load average "
          f"before / after {run.facts['load average (1, 5, 15 min) before / after']}\n")
    print(summary_table(report.table_rows([(run.run_id, s) for s in sections])))
    md = write(args, run, sections)
    print(f"\nwrote {md}")
    return 1 if any(s.error for s in sections) else 0


if __name__ == "__main__":
    raise SystemExit(main())
