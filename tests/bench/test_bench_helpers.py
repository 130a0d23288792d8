"""Pure pieces of the benchmark suite: medians, formatting, the table, report merging, rows."""

from __future__ import annotations

import json
import math

import pytest

from bench import report, run_all
from bench.common import Row, Section, fmt_num, fmt_ratio, markdown_table, median, summary_table


@pytest.mark.parametrize(("values", "expected"), [
    ([3.0], 3.0), ([5, 1, 3], 3.0), ([4, 1, 3, 2], 2.5), ([2, 2, 100], 2.0),
])
def test_median(values, expected):
    assert median(values) == expected
    assert median(iter(values)) == expected


def test_median_of_nothing_raises_instead_of_nan():
    with pytest.raises(ValueError):
        median([])


@pytest.mark.parametrize(("x", "text"), [
    (0.001234, "0.00123"), (1.234, "1.23"), (12.34, "12.3"), (123.4, "123"), (12345.6, "12,346"),
    (None, "-"), (float("nan"), "-"), (float("inf"), "-"),
])
def test_fmt_num(x, text):
    assert fmt_num(x) == text


def test_ratio_is_ours_over_baseline_and_missing_when_not_measured():
    assert Row("a", 3.0, 12.0, "ms").ratio == pytest.approx(0.25)
    assert Row("a", 3.0, 12.0, "ms").measured
    assert Row("a", 3.0, 0.0, "ms").ratio is None and not Row("a", 3.0, 0.0, "ms").measured
    assert Row("a", None, None, "ms", skipped="no CUDA device").ratio is None
    assert fmt_ratio(0.25) == "0.25x" and fmt_ratio(None) == "-"
    assert not Row("a", float("nan"), 1.0, "ms").measured


def test_summary_table_has_one_line_per_row_with_ratio_direction_and_skips():
    rows = [("t", Row("mesh build", 12.4, 375.7, "ms", baseline_name="numpy")),
            ("t", Row("throughput", 8.0, 2.0, "images/s", better="higher")),
            ("t", Row("gpu", None, None, "images/s", skipped="no CUDA device"))]
    lines = summary_table(rows).splitlines()
    assert lines[0].startswith("| benchmark | ours (median) | baseline (median, same run) |")
    assert len(lines) == 2 + len(rows)
    assert lines[2] == "| mesh build | 12.4 | 376 | 0.03x | ms, lower is better; baseline: numpy |"
    assert "| 4.00x | images/s, higher is better |" in lines[3]
    assert lines[4] == "| gpu | - | - | - | skipped: no CUDA device |"


def test_markdown_table_alignment():
    text = markdown_table(["a", "b"], [[1, 2]], "lr")
    assert text.splitlines() == ["| a | b |", "|---|---:|", "| 1 | 2 |"]


def _section(key: str, value: float, error: str = "") -> Section:
    return Section(key, f"Title {key}", f"cmd {key}", [Row(f"{key} row", value, 2 * value, "ms")],
                   detail=f"detail {key}", error=error)


def test_json_round_trip_and_merge_keep_other_sections_in_suite_order():
    runs = {"r1": report.RunInfo("r1", "python -m bench", 60.0, {"CPU": "x"})}
    old = [("r1", _section("predict", 1.0)), ("r1", _section("gpu", 5.0))]
    runs2, back = report.from_json(report.to_json(runs, old))
    assert runs2 == runs and back == old
    merged = report.merge(old, [("r2", _section("gpu", 7.0)), ("r2", _section("mesh", 3.0))],
                          list(run_all.BENCHMARKS))
    assert [(rid, s.key, s.rows[0].ours) for rid, s in merged] == [
        ("r1", "predict", 1.0), ("r2", "mesh", 3.0), ("r2", "gpu", 7.0)]


def test_render_includes_notes_verbatim_failures_and_run_facts(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "NOTES", tmp_path)
    (tmp_path / "mesh.md").write_text("### Hand-written\n\nKeep **this** exactly.\n")
    (tmp_path / "intro.md").write_text("Intro text.")
    runs = {"r1": report.RunInfo("r1", "python -m bench", 90.0, {"CPU": "EPYC, 2 cores"})}
    pairs = [("r1", _section("mesh", 1.5)), ("r1", _section("store", 1.0, error="OSError: x"))]
    md = report.render(runs, pairs)
    assert "### Hand-written\n\nKeep **this** exactly.\n" in md
    assert md.index("Intro text.") < md.index("## Summary") < md.index("## 1. Title mesh")
    assert "| mesh row | 1.50 | 3.00 | 0.50x |" in md
    assert "| Title store | - | - | - | skipped: FAILED: OSError: x |" in md
    assert "  - CPU: EPYC, 2 cores" in md and "**Failed:** OSError: x" in md


def test_output_paths_quick_never_writes_the_docs_and_only_merges(tmp_path):
    quick = run_all.parse_args(["--quick"])
    assert run_all.output_paths(quick)[0] != run_all.DOCS
    assert run_all.output_paths(run_all.parse_args(["--only", "gpu"])) == (
        run_all.DOCS, run_all.RESULTS, True)
    out = tmp_path / "b.md"
    assert run_all.output_paths(run_all.parse_args(["--only", "gpu", "--out", str(out)])) == (
        out, tmp_path / "b.json", False)
    assert run_all.output_paths(run_all.parse_args([]))[2] is False


def test_only_replaces_its_section_in_the_written_results(tmp_path, monkeypatch):
    monkeypatch.setattr(run_all, "DOCS", tmp_path / "benchmarks.md")
    monkeypatch.setattr(run_all, "RESULTS", tmp_path / "results.json")
    old_run = report.RunInfo("r1", "python -m bench")
    run_all.RESULTS.write_text(report.to_json(
        {"r1": old_run}, [("r1", _section("predict", 1.0)), ("r1", _section("gpu", 2.0))]))
    new_run = report.RunInfo("r2", "python -m bench --only gpu")
    run_all.write(run_all.parse_args(["--only", "gpu"]), new_run, [_section("gpu", 9.0)])
    data = json.loads(run_all.RESULTS.read_text())
    assert [(s["run_id"], s["key"]) for s in data["sections"]] == [("r1", "predict"),
                                                                  ("r2", "gpu")]
    assert set(data["runs"]) == {"r1", "r2"}
    assert "| gpu row | 9.00 |" in run_all.DOCS.read_text()


def test_a_failing_benchmark_becomes_a_failed_section(tmp_path, monkeypatch):
    (tmp_path / "failing_bench_mod.py").write_text(
        "def run(quick=False):\n    raise RuntimeError('boom')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(run_all.BENCHMARKS, "predict", "failing_bench_mod")
    out = tmp_path / "s.json"
    assert run_all.run_child("predict", True, out) == 0
    section = report.section_from_dict(json.loads(out.read_text()))
    assert section.error == "RuntimeError: boom" and not section.rows
    assert "FAILED: RuntimeError: boom" in summary_table(report.table_rows([("r", section)]))


def test_store_summary_pairs_each_backend_with_its_baseline():
    from bench.bench_store import Result, summary_rows

    def res(backend, n, lat, mode="threads", think=0.0, wall=1.0):
        return Result(backend, mode, n, think, latencies_ms=list(lat), wall_s=wall)

    results = [res("sqlite", 10, [1, 2, 3]), res("sqlite-default", 10, [4, 8, 12]),
               res("postgresql", 10, [2, 4, 6], wall=2.0), res("sqlite", 10, [50, 60], think=500.0),
               res("sqlite", 10, [9, 9], mode="processes")]
    rows = {r.name: r for r in summary_rows(results)}
    assert set(rows) == {f"review save p{q}: {b}, 10 concurrent reviewers (threads)"
                         for q in (50, 95) for b in ("SQLite make_engine", "PostgreSQL")} | {
        "review saves/s: PostgreSQL (fsync on), 10 concurrent writers (threads)"}
    # saves per second of wall time: 3 saves in 2 s against SQLite's 3 in 1 s; no one-commit
    # SQLite run here, so SQLite's own throughput row is left out rather than paired with nothing
    pg_rate = rows["review saves/s: PostgreSQL (fsync on), 10 concurrent writers (threads)"]
    assert (pg_rate.ours, pg_rate.baseline, pg_rate.better) == (1.5, 3.0, "higher")
    p50 = rows["review save p50: SQLite make_engine, 10 concurrent reviewers (threads)"]
    assert (p50.ours, p50.baseline) == (2.0, 8.0)
    pg = rows["review save p95: PostgreSQL, 10 concurrent reviewers (threads)"]
    assert pg.ours == pytest.approx(5.8) and pg.baseline == pytest.approx(2.9)


def test_gpu_rows_pair_fp16_with_fp32_of_the_same_model_and_batch():
    from bench.bench_gpu import rows_from

    def r(model, batch, dtype, rate):
        return {"model": model, "batch": batch, "dtype": dtype, "rate": rate, "finite": 1.0,
                "params": 2e6}

    rows = rows_from([r("m", 1, "float32", 10.0), r("m", 1, "float16", 25.0),
                      r("m", 8, "float32", 40.0), r("m", 8, "float16", 120.0)])
    assert [(x.name, x.ratio) for x in rows] == [("gpu: m, batch 1, fp16", 2.5),
                                                  ("gpu: m, batch 8, fp16", 3.0)]
    assert all(x.better == "higher" for x in rows)


def test_gpu_throughput_timer_works_on_any_device():
    import torch

    from bench.bench_gpu import throughput

    model = torch.nn.Conv2d(3, 1, 3, padding=1).eval()
    rate, finite = throughput(model, lambda m, x: m(x), 2, 32, torch.float32, "cpu", repeats=2,
                              iters=2, warmup=1)
    assert math.isfinite(rate) and rate > 0 and finite == 1.0


@pytest.mark.parametrize(("size", "millions"), [("small", 24.8), ("base", 97.5), ("large", 335.3)])
def test_gpu_depth_anything_configs_match_the_released_model_sizes(size, millions):
    import torch
    from transformers import DepthAnythingForDepthEstimation

    from bench.bench_gpu import depth_anything_config, parameter_count

    with torch.device("meta"):  # shapes only: no memory, no init cost
        model = DepthAnythingForDepthEstimation(depth_anything_config(size))
    assert parameter_count(model) / 1e6 == pytest.approx(millions, abs=0.05)


def test_gpu_depth_pro_config_matches_the_released_model_size():
    import torch
    from transformers import DepthProForDepthEstimation

    from bench.bench_gpu import depth_pro_config, parameter_count

    with torch.device("meta"):
        model = DepthProForDepthEstimation(depth_pro_config())
    assert parameter_count(model) / 1e6 == pytest.approx(952.0, abs=0.5)


def test_gpu_section_without_cuda_reports_a_skip_and_no_numbers(monkeypatch):
    import torch

    from bench import bench_gpu

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    section = bench_gpu.run(quick=True)
    assert [(r.ours, r.baseline, r.skipped) for r in section.rows] == [
        (None, None, "no CUDA device")]


def test_a_dict_result_becomes_a_section_and_not_ok_is_a_failure():
    result = {"rows": [{"name": "predict p95 latency, 10 clients vs 1", "ours": 300.0,
                        "baseline": 100.0, "unit": "ms", "ratio": 3.0}],
              "table": ["| kind | p95 |"], "ok": True}
    section = run_all.as_section("load", result)
    assert [(r.name, r.ratio) for r in section.rows] == [
        ("load: predict p95 latency, 10 clients vs 1", 3.0)]
    assert section.detail == "```\n| kind | p95 |\n```" and not section.error
    assert run_all.as_section("load", {**result, "ok": False}).error
    plain = _section("mesh", 1.0)
    assert run_all.as_section("mesh", plain) is plain
