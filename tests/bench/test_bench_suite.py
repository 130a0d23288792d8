"""``python -m bench --quick``: every benchmark runs, one table, finite ratios, markdown written."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import real_data_fixture

from bench.run_all import BENCHMARKS

REPO = Path(__file__).resolve().parents[2]
SUITE = tuple(BENCHMARKS)
pytestmark = pytest.mark.timeout(1800)  # the shared fixture runs the suite (2-8 min here)


def _positive(x) -> bool:
    return isinstance(x, int | float) and math.isfinite(x) and x > 0


@pytest.fixture(scope="module")
@real_data_fixture
def quick_run(tmp_path_factory):
    """One quick run of the whole suite (2.5 min here when quiet) and its outputs."""
    from conftest import require_shared_data

    require_shared_data()
    out = tmp_path_factory.mktemp("bench") / "bench.md"
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "bench", "--quick", "--out", str(out)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    return proc, out


@pytest.mark.slow
@pytest.mark.postgres
def test_quick_suite_measures_every_benchmark_against_a_same_run_baseline(quick_run):
    proc, out = quick_run
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    data = json.loads(out.with_suffix(".json").read_text())
    sections = {s["key"]: s for s in data["sections"]}
    assert tuple(sections) == SUITE
    for key, section in sections.items():
        assert not section["error"], (key, section["error"])
        assert section["rows"], key
        if key == "gpu":
            continue
        rows = section["rows"]
        if key == "load":  # a short quick phase may see no request of a rare kind
            assert sum(not r["skipped"] for r in rows) >= len(rows) // 2, rows
            rows = [r for r in rows if r["skipped"] != "no sample in one of the phases"]
        for row in rows:
            assert not row["skipped"], row
            assert _positive(row["ours"]) and _positive(row["baseline"]), row
            assert row["better"] in ("lower", "higher") and row["unit"], row
    names = [r["name"] for s in sections.values() for r in s["rows"]]
    for prefix in ("predict:", "pseudo-label:", "mesh:", "stereo:", "app start:", "studio:"):
        assert any(n.startswith(prefix) for n in names), prefix
    for action in ("next", "open", "note", "anchors", "undo", "approve"):  # vs the floor
        assert any(n.startswith(f"review: {action} p95, 1 reviewer") for n in names), action
    assert any(n.startswith("review: all actions p95, ") for n in names)
    assert any(n.startswith("review saves/s: SQLite") for n in names)
    for q in ("p50", "p95"):
        for backend in ("SQLite", "PostgreSQL"):
            for n in (1, 10, 50):
                assert any(name.startswith(f"review save {q}: {backend}") and f" {n} concurrent"
                           in name for name in names), (q, backend, n)


@pytest.mark.slow
@pytest.mark.postgres
def test_gpu_rows_are_measured_or_say_why_not(quick_run):
    import torch

    _, out = quick_run
    gpu = next(s for s in json.loads(out.with_suffix(".json").read_text())["sections"]
               if s["key"] == "gpu")
    if torch.cuda.is_available():
        assert all(_positive(r["ours"]) and _positive(r["baseline"]) for r in gpu["rows"])
    else:  # never fake numbers
        assert [(r["ours"], r["baseline"], r["skipped"]) for r in gpu["rows"]] == [
            (None, None, "no CUDA device")]


@pytest.mark.slow
@pytest.mark.postgres
def test_one_printed_table_and_the_markdown_have_every_row(quick_run):
    proc, out = quick_run
    data = json.loads(out.with_suffix(".json").read_text())
    rows = [r for s in data["sections"] for r in s["rows"]]
    final = proc.stdout[proc.stdout.rindex("| benchmark | ours (median)"):]
    md = out.read_text()
    summary = md[md.index("## Summary"):md.index("## Runs and machines")]
    for row in rows:
        assert f"| {row['name']} |" in final and f"| {row['name']} |" in summary, row["name"]
    for r in rows:
        if r["ours"] and r["baseline"]:
            assert f"{r['ours'] / r['baseline']:.2f}x" in summary, r["name"]
    for fact in ("CPU", "load average", "torch", "gradio", "SQLite", "PostgreSQL"):
        assert f"  - {fact}" in md, fact
    numbered = re.findall(r"\n## (\d+)\. ", md)  # one per benchmark, numbered in order
    assert numbered == [str(i) for i in range(1, len(SUITE) + 1)]
    assert "\n## Summary\n" in md and "\n## Runs and machines\n" in md
