"""Load benchmark: 50 logged-in ``gradio_client`` clients mixing Studio predictions and review
saves against one launched app (SQLite file, tiny random-weight Depth Anything V2), p50 / p95
latency per request kind against a baseline measured in the same run: one client running the
same mix alone. ratio = p95 with N clients / p95 with 1 client.

The workload is the load test's (``tests/load/``: :mod:`tests.load.seeding` launches and seeds
the app, :mod:`tests.load.workload` runs the clients, :mod:`tests.load.scenario` the phases
and the database checks), so the numbers are what ``tests/load/test_load.py`` asserts on.

    python -m bench.bench_load                         # repo root: 50 clients 30 s, 1 client 30 s
    python -m bench.bench_load --clients 20 --seconds 15 --baseline-seconds 10 --burst 2
    python -m bench.bench_load --json /tmp/load.json   # also write the full report

``run(...)`` returns a dict (``rows`` for the suite's summary table, ``report`` with every
phase); ``main()`` prints the table.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"


def _paths() -> None:
    for p in (str(REPO), str(REPO / "tests")):
        if p not in sys.path:
            sys.path.insert(0, p)


def run(quick: bool = False, *, clients: int = 50, seconds: float = 30.0,
        baseline_seconds: float = 30.0, burst: int = 0, queue_max_size: int = 100,
        seed: int = 0) -> dict:
    """Run the scenario once (``quick``: 10 clients, 8 s, baseline 6 s) and return
    ``{"rows": [...], "report": {...}, "table": [lines], "machine": {...}}``; each row is
    ``{name, ours (p95 ms at N clients), baseline (p95 ms at 1 client), unit, ratio}``."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    _paths()
    from tests.load.scenario import format_table, run_scenario
    from tests.load.workload import KINDS

    if quick:
        clients, seconds, baseline_seconds = min(clients, 10), 8.0, 6.0
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        result = run_scenario(Path(tmp), DATA, clients=clients, duration_s=seconds,
                              baseline_s=baseline_seconds, burst_per_client=burst,
                              queue_max_size=queue_max_size, seed=seed)
    report = result.report()
    load, base = report["phases"]["load"]["kinds"], report["phases"]["baseline"]["kinds"]
    rows = [{"name": f"{kind} p95 latency, {clients} clients vs 1",
             "ours": load[kind]["p95_ms"], "baseline": base[kind]["p95_ms"], "unit": "ms",
             "ratio": report["p95_ratio_load_vs_baseline"].get(kind)} for kind in KINDS]
    return {"rows": rows, "report": report, "table": format_table(report),
            "machine": _machine(), "ok": _ok(report, result.db_problems)}


def _ok(report: dict, problems: list[str]) -> bool:
    """No failed request in any phase and a consistent database."""
    return not problems and all(p["failed"] == 0 for p in report["phases"].values())


def _machine() -> dict:
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "cpus": os.cpu_count(), "python": platform.python_version(),
            "load_average": [round(x, 2) for x in load] if load else None}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=30.0, help="load phase length")
    ap.add_argument("--baseline-seconds", type=float, default=30.0,
                    help="one client alone, same mix")
    ap.add_argument("--burst", type=int, default=0,
                    help="then every client submits this many requests at once")
    ap.add_argument("--queue-max-size", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", type=Path, help="write the whole result here")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    out = run(args.quick, clients=args.clients, seconds=args.seconds,
              baseline_seconds=args.baseline_seconds, burst=args.burst,
              queue_max_size=args.queue_max_size, seed=args.seed)
    print(f"# load benchmark ({out['machine']})")
    print("\n".join(out["table"]))
    print(f"timings (s): {out['report']['timings_s']}")
    print(f"database problems: {out['report']['db_problems'] or 'none'}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0 if out["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
