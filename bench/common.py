"""What every benchmark shares: result rows, medians, the summary table and machine facts.

A benchmark module exposes ``run(quick: bool = False) -> Section``: its summary rows (one
number for ours and one for the baseline measured in the same run) and a markdown detail
section. ``python -m bench`` (:mod:`bench.run_all`) collects the sections into one table and
``docs/benchmarks.md``. Nothing here prints.
"""

from __future__ import annotations

import math
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
OFFLINE_ENV = {"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}


@dataclass
class Row:
    """One line of the summary table: ``ours`` against ``baseline``, both medians of one run.

    ``ratio`` is always ours / baseline; ``better`` ("lower" or "higher") says which way is
    good. A row that could not be measured has ``skipped`` set and no numbers.
    """

    name: str
    ours: float | None
    baseline: float | None
    unit: str
    better: str = "lower"
    baseline_name: str = ""
    notes: str = ""
    skipped: str = ""

    @property
    def ratio(self) -> float | None:
        if self.ours is None or self.baseline is None or self.baseline == 0:
            return None
        return self.ours / self.baseline

    @property
    def measured(self) -> bool:
        return not self.skipped and is_positive_finite(self.ours) and is_positive_finite(
            self.baseline)


@dataclass
class Section:
    """One benchmark's results: summary rows plus a markdown detail body (no heading)."""

    key: str
    title: str
    command: str
    rows: list[Row] = field(default_factory=list)
    detail: str = ""
    seconds: float = 0.0
    error: str = ""
    load_before: str = ""  # load averages (1, 5, 15 min) when it started and ended
    load_after: str = ""


def is_positive_finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x) and x > 0


def median(values: Iterable[float]) -> float:
    """Median of ``values``; raises ValueError on an empty input (never returns NaN)."""
    data = [float(v) for v in values]
    if not data:
        raise ValueError("median of no values")
    return float(statistics.median(data))


def fmt_num(x: float | None) -> str:
    """Three significant figures, thousands grouped: 0.00123, 1.23, 123, 12,345."""
    if x is None or not math.isfinite(x):
        return "-"
    ax = abs(x)
    if ax >= 1000:
        return f"{x:,.0f}"
    if ax >= 100:
        return f"{x:.0f}"
    if ax >= 10:
        return f"{x:.1f}"
    if ax >= 1:
        return f"{x:.2f}"
    return f"{x:.3g}"


def fmt_ratio(x: float | None) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x:.2f}x"


def summary_table(rows: Sequence[tuple[str, Row]]) -> str:
    """Markdown table of ``(section title, row)`` pairs (also readable as plain text)."""
    lines = [
        "| benchmark | ours (median) | baseline (median, same run) | ratio | unit / notes |",
        "|---|---:|---:|---:|---|",
    ]
    for _title, row in rows:
        if row.skipped:
            lines.append(f"| {row.name} | - | - | - | skipped: {row.skipped} |")
            continue
        notes = f"{row.unit}, {row.better} is better"
        if row.baseline_name:
            notes += f"; baseline: {row.baseline_name}"
        if row.notes:
            notes += f"; {row.notes}"
        lines.append(
            f"| {row.name} | {fmt_num(row.ours)} | {fmt_num(row.baseline)} | "
            f"{fmt_ratio(row.ratio)} | {notes} |"
        )
    return "\n".join(lines)


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[object]],
                   align: str = "") -> str:
    """A markdown table; ``align`` has one letter per column (l or r, default l)."""
    marks = [("---:" if a == "r" else "---") for a in align.ljust(len(header), "l")]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(marks) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def median_ms(fn: Callable[[], object], runs: int, warmup: int = 1) -> float:
    """Median wall time of ``fn`` in milliseconds over ``runs`` calls after ``warmup``."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return median(times)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024**2
    except (OSError, ValueError, IndexError):
        pass
    return None


def load_average() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def postgres_version() -> str:
    """``postgres --version`` of the binaries pgserver would use, or why there is none."""
    from depthweb.store.pgserver import find_pg_bindir

    bindir = find_pg_bindir()
    if bindir is None:
        return "not installed"
    try:
        out = subprocess.run([str(bindir / "postgres"), "--version"], capture_output=True,
                             text=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"unknown ({type(exc).__name__})"
    return out.stdout.strip().removeprefix("postgres (PostgreSQL) ")


def software_versions() -> dict[str, str]:
    """Versions of what the numbers depend on (imports are local: heavy modules)."""
    import sqlite3

    import cv2
    import gradio
    import numpy
    import sqlalchemy
    import torch
    import transformers

    cuda = torch.version.cuda or "none"
    return {
        "Python": platform.python_version(), "torch": f"{torch.__version__} (CUDA {cuda})",
        "transformers": transformers.__version__, "gradio": gradio.__version__,
        "numpy": numpy.__version__, "OpenCV": cv2.__version__,
        "SQLAlchemy": sqlalchemy.__version__, "SQLite": sqlite3.sqlite_version,
        "PostgreSQL": postgres_version(),
    }


def gpu_name() -> str:
    import torch

    if not torch.cuda.is_available():
        return "none (no CUDA device)"
    return ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment for benchmark child processes: offline, no analytics, repo importable."""
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, **OFFLINE_ENV, "PYTHONPATH": path, **extra}
