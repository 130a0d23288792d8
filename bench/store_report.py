"""Markdown for the store benchmark (:mod:`bench.bench_store`): table, ratios, machine."""

from __future__ import annotations

import os
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy

if TYPE_CHECKING:
    from bench.bench_store import Result


def filesystem(path: Path) -> str:
    """Type and device of the mount holding ``path`` (from /proc/mounts)."""
    best = ("?", "?", "")
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            dev, mnt, fstype = line.split()[:3]
            if str(path.resolve()).startswith(mnt) and len(mnt) >= len(best[2]):
                best = (fstype, dev, mnt)
    except OSError:
        pass
    return f"{best[0]} on {best[1]}"


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return f"{cpu}, {os.cpu_count()} CPUs, {platform.platform()}, load average {load}"


def result_row(r: Result) -> str:
    rate = len(r.latencies_ms) / r.wall_s if r.wall_s else float("nan")
    worst = max(r.latencies_ms, default=float("nan"))
    return (
        f"| {r.backend} | {r.think_ms:g} | {r.reviewers} | {r.mode} | {len(r.latencies_ms)} "
        f"| {r.pct(50):.2f} | {r.pct(95):.2f} | {r.pct(99):.2f} | {worst:.1f} | {rate:.0f} "
        f"| {len(r.errors)} |"
    )


def ratio_lines(results: list[Result]) -> list[str]:
    tuned = {(r.mode, r.reviewers, r.think_ms): r for r in results if r.backend == "sqlite"}
    out = []
    for r in results:
        t = tuned.get((r.mode, r.reviewers, r.think_ms))
        if r.backend.startswith("sqlite-") and t and t.latencies_ms and r.latencies_ms:
            out.append(
                f"- {r.backend}, {r.reviewers} reviewers, {r.mode}, think {r.think_ms:g} ms: "
                f"p50 {r.pct(50) / t.pct(50):.2f}x, p95 {r.pct(95) / t.pct(95):.2f}x, "
                f"p99 {r.pct(99) / t.pct(99):.2f}x, errors {len(r.errors)} vs {len(t.errors)}"
            )
    return out


def render(results: list[Result], command: str, pg_version: str, fs: str) -> str:
    import sqlite3

    lines = [
        "# Store benchmark: review save latency",
        "",
        f"- command: `{command}`",
        f"- date: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: {machine()}",
        f"- database files and PostgreSQL data directory: {fs}",
        f"- software: Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
        f"SQLAlchemy {sqlalchemy.__version__}, PostgreSQL {pg_version}",
        "",
        "A save = one write session that appends a correction (version-guarded UPDATE of the",
        "task + INSERT of the revision) and commits; each reviewer saves on its own task, and",
        "the latency includes waiting for other writers. `think` is the mean pause between a",
        "reviewer's saves (0 = saturation: every reviewer saves back to back; 500 = a fast",
        "human pace).",
        "`sqlite` is `make_engine` (WAL, synchronous=FULL, busy_timeout, BEGIN IMMEDIATE,",
        "in-process writer queue with group commit: saves queued behind one another share one",
        "transaction, a savepoint each, and one COMMIT/fsync); `sqlite-onecommit` is the same",
        "with one COMMIT per save (the writer queue as it was before group commit);",
        "`sqlite-normal` is `make_engine` with synchronous=NORMAL (the",
        "cost of power-cut durability); `sqlite-noqueue` is the same without the writer queue;",
        "`sqlite-default` is the baseline: SQLAlchemy's default",
        "engine, rollback journal, no pragmas, measured in the same run next to it;",
        "`postgresql` is a local server with fsync and synchronous_commit on.",
        'Errors are saves that raised (e.g. "database is locked").',
        "",
        "| backend | think ms | reviewers | mode | saves | p50 ms | p95 ms | p99 ms | max ms "
        "| saves/s | errors |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [result_row(r) for r in results]
    errs = sorted({e for r in results for e in r.errors})
    if errs:
        lines += ["", "Distinct errors:", ""] + [f"- `{e}`" for e in errs[:10]]
    lines += ["", "Other SQLite engines relative to `make_engine` (same run, >1 = slower):", ""]
    lines += ratio_lines(results)
    return "\n".join(lines) + "\n"
