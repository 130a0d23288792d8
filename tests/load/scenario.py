"""The whole load scenario, shared by ``tests/load/test_load.py`` and ``bench/bench_load.py``:
launch the platform (:mod:`tests.load.seeding`), log in the clients, warm up, then the phases

1. ``baseline`` (optional): one client running the mix alone for ``baseline_s``;
2. ``load``: every client running the mix at once for ``duration_s``;
3. ``burst`` (optional): every client submits ``burst_per_client`` requests at once, more than
   the queue holds, so some are refused with "queue is full";
4. ``recovery``: two clients each predict, open a task and save a note, one at a time;

and check the database (:func:`tests.load.seeding.check_database`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.load import workload as wl
from tests.load.seeding import check_database, db_file, start_platform


@dataclass
class ScenarioResult:
    phases: dict[str, wl.Tally]
    db_problems: list[str]
    timings_s: dict[str, float] = field(default_factory=dict)
    settings: dict = field(default_factory=dict)
    server_log_tail: str = ""

    def report(self) -> dict:
        """JSON-ready: settings, timings, each phase's summary, p95 ratios, DB problems."""
        phases = {name: t.summary() for name, t in self.phases.items()}
        return {"settings": self.settings, "timings_s": self.timings_s, "phases": phases,
                "p95_ratio_load_vs_baseline": p95_ratios(phases),
                "db_problems": self.db_problems}


def p95_ratios(phases: dict[str, dict]) -> dict[str, float | None]:
    """Per kind: p95 in the ``load`` phase / p95 in the ``baseline`` phase (None if absent)."""
    if "baseline" not in phases or "load" not in phases:
        return {}
    out = {}
    for kind in wl.KINDS:
        a = phases["load"]["kinds"][kind]["p95_ms"]
        b = phases["baseline"]["kinds"][kind]["p95_ms"]
        out[kind] = round(a / b, 2) if a and b else None
    return out


def format_table(report: dict) -> list[str]:
    """Plain-text lines: per phase and kind, requests, outcomes, p50 / p95 / max in ms."""
    lines = []
    head = f"{'phase':<9} {'kind':<8} {'n':>5} {'ok':>5} {'stale':>5} {'refus':>5} " \
           f"{'empty':>5} {'qfull':>5} {'fail':>4} {'p50 ms':>8} {'p95 ms':>8} " \
           f"{'max ms':>8} {'x p95':>6}"
    ratios = report.get("p95_ratio_load_vs_baseline", {})
    for name, phase in report["phases"].items():
        lines += [f"{name}: {phase['requests']} requests in {phase['wall_s']} s "
                  f"({phase['throughput_rps']} req/s)", head]
        for kind, k in phase["kinds"].items():
            if not k["requests"]:
                continue
            ratio = ratios.get(kind) if name == "load" else None
            lines.append(
                f"{name:<9} {kind:<8} {k['requests']:>5} {k['ok']:>5} {k['stale']:>5} "
                f"{k['refused']:>5} {k['empty']:>5} {k['queue_full']:>5} {k['failed']:>4} "
                f"{_ms(k['p50_ms'])} "
                f"{_ms(k['p95_ms'])} {_ms(k['max_ms'])} {ratio or '':>6}")
    return lines


def _ms(value: float | None) -> str:
    return f"{value:>8.0f}" if value is not None else f"{'-':>8}"


def warm_up(worker: wl.Worker) -> wl.Tally:
    """Load the model and the first page once (not timed); a failure here stops the run."""
    worker.tally = wl.Tally()
    for kind in ("predict", "open"):
        worker.step(kind)
    if worker.tally.count("ok") != 2:
        raise RuntimeError(f"warm-up failed: {worker.tally.failures}")
    return worker.tally


def recover(workers: list[wl.Worker]) -> wl.Tally:
    """After the burst: each worker predicts, opens a task and saves a note."""
    total = wl.Tally()
    start = time.monotonic()
    for w in workers:
        w.tally = wl.Tally()
        for kind in ("predict", "open", "note"):
            w.step(kind)
        total.merge(w.tally)
    total.wall_s = time.monotonic() - start
    return total


def run_scenario(root: Path, shared: Path, *, clients: int = 50, duration_s: float = 30.0,
                 baseline_s: float = 0.0, burst_per_client: int = 0,
                 queue_max_size: int = 100, n_tasks: int = 40, required_reviews: int = 3,
                 seed: int = 0, timeout_s: float = 240.0) -> ScenarioResult:
    """Everything under ``root`` (a fresh folder); see the module docstring."""
    settings = dict(clients=clients, duration_s=duration_s, baseline_s=baseline_s,
                    burst_per_client=burst_per_client, queue_max_size=queue_max_size,
                    n_tasks=n_tasks, required_reviews=required_reviews, seed=seed)
    timings: dict[str, float] = {}
    t0 = time.monotonic()
    platform = start_platform(root, shared, n_users=clients, n_tasks=n_tasks,
                              required_reviews=required_reviews,
                              queue_max_size=queue_max_size, seed_value=seed)
    timings["setup"] = round(time.monotonic() - t0, 1)
    conns: list = []
    try:
        t0 = time.monotonic()
        conns = wl.connect(platform.url, platform.users, platform.password)
        timings["login"] = round(time.monotonic() - t0, 1)
        workers = wl.make_workers(conns, platform.task_ids, platform.photo, seed=seed,
                                  timeout_s=timeout_s, anchors=platform.anchors)
        phases = {"warmup": warm_up(workers[0])}
        if baseline_s > 0:
            phases["baseline"] = wl.run_mix(workers[:1], duration_s=baseline_s)
        phases["load"] = wl.run_mix(workers, duration_s=duration_s)
        if burst_per_client > 0:
            phases["burst"] = wl.burst(conns, platform.task_ids, per_client=burst_per_client,
                                       timeout_s=timeout_s)
        phases["recovery"] = recover(workers[:2])
    finally:
        wl.close_all(conns)
        log_tail = platform.server.log()[-4000:]
        platform.stop()
    total = wl.Tally()
    for tally in phases.values():
        total.merge(tally)
    problems = check_database(db_file(platform.server), platform.versions_before,
                              total.saves, total.claims, total.approvals)
    timings["total"] = round(sum(t.wall_s for t in phases.values()) + timings["setup"]
                             + timings["login"], 1)
    return ScenarioResult(phases, problems, timings, settings, log_tail)
