"""The loop benchmark (issue 15): its ``--quick`` form end to end, and the simulated reviewers'
decisions on labels whose errors are known."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from sqlalchemy import func, select

from bench import bench_loop
from bench import loop_experiment as ex
from bench.loop_reviewers import Budget, aligned_error, plan_review


def _room(h: int = 48, w: int = 64) -> np.ndarray:
    """Exact depth of a floor-and-wall scene: a ramp (near at the bottom) and sky on top."""
    rows = np.linspace(1.0, 0.2, h)[:, None] * np.ones((1, w))
    depth = (2.0 / rows).astype(np.float32)
    depth[:6] = np.inf
    return depth


def test_a_perfect_label_is_approved_untouched_except_the_sky():
    depth = _room()
    label = np.where(np.isfinite(depth), 3.0 / depth + 0.1, 0.1).astype(np.float32)
    plan = plan_review(label, depth, Budget(), np.random.default_rng(0))
    assert plan.absrel == pytest.approx(0.0, abs=1e-6)
    assert not plan.reject and plan.mask is None and plan.pairs == []
    assert plan.far is not None and plan.far[:6].all() and not plan.far[6:].any()


def test_a_wrong_region_is_masked_and_a_far_off_label_rejected():
    depth = _room()
    label = np.where(np.isfinite(depth), 1.0 / depth, 0.0).astype(np.float32)
    label[32:40, 16:24] = label.max() * 3  # one tile (on the 8-pixel grid) far too near
    plan = plan_review(label, depth, Budget(), np.random.default_rng(0))
    assert not plan.reject and plan.mask is not None
    assert plan.mask[32:40, 16:24].all() and plan.mask.mean() <= Budget().mask_fraction
    err, _ = aligned_error(label, depth)
    assert np.nanmean(err[plan.mask]) > np.nanmean(err[~plan.mask])
    noise = np.random.default_rng(1).uniform(0, 1, depth.shape).astype(np.float32)
    off = plan_review(noise, depth, Budget(reject_absrel=0.2), np.random.default_rng(0))
    assert off.reject and off.absrel > 0.2 and off.mask is None and off.pairs == []


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    work = tmp_path_factory.mktemp("loop-work")
    result = bench_loop.experiment(ex.QUICK, Budget(), work, real=False)
    section = bench_loop.section(result, True, 1.0)
    out = bench_loop.write_report(result, section, work / "report", "curve.png")
    return work, result, section, out


def test_quick_form_reports_finite_numbers_for_every_model(quick):
    _, r, section, _ = quick
    n = len(ex.QUICK.seeds)
    assert len(r["raw"]) == len(r["reviewed"]) == len(r["truth"]) == n
    assert [c["reviewed"] for c in r["curve"]] == list(ex.QUICK.curve)
    for run in [r["teacher"], *r["raw"], *r["reviewed"], *r["truth"], *r["curve"]]:
        assert math.isfinite(run["abs_rel"]) and run["abs_rel"] > 0
        assert 0.0 <= run["delta1"] <= 1.0
    assert {s["seed"] for s in r["reviewed"]} == set(ex.QUICK.seeds)
    assert all(row.measured for row in section.rows) and not section.error
    v = r["verdict"]
    assert isinstance(v["beats_raw"], bool) and isinstance(v["beats_teacher"], bool)
    assert ("does not beat" in section.detail) == (not (v["beats_raw"] and v["beats_teacher"]))


def test_quick_form_writes_the_report_and_the_curve(quick):
    from PIL import Image

    _, r, _, md = quick
    text = md.read_text()
    assert "| student on ground truth (ceiling) |" in text and "![AbsRel" in text
    assert json.loads((md.parent / "loop.json").read_text())["verdict"] == json.loads(
        json.dumps(r["verdict"]))
    with Image.open(md.parent / "curve.png") as png:
        assert png.format == "PNG" and png.size == (640, 400)


def test_review_actions_are_revisions_in_the_database(quick):
    """Every decision and correction the reviewers made is a revision of the streets tasks
    (read here with our own query), and every pool image was decided."""
    from depthweb.config import Settings
    from depthweb.services.review import ReviewContext
    from depthweb.store.models import Dataset, Image, Revision, Task

    work, r, _, _ = quick
    with ReviewContext.from_settings(Settings(data_dir=work / "data")) as ctx, \
            ctx.session(readonly=True) as s:
        rows = dict(s.execute(
            select(Revision.action, func.count(Revision.id))
            .join(Task, Revision.task_id == Task.id).join(Image, Task.image_id == Image.id)
            .join(Dataset, Image.dataset_id == Dataset.id)
            .where(Dataset.name == ex.DATASET).group_by(Revision.action)).all())
    stored = {str(getattr(k, "value", k)): v for k, v in rows.items()}
    acts = r["review_actions"]
    assert stored.get("approve", 0) == acts.get("approve", 0)
    assert stored.get("reject", 0) == acts.get("reject", 0)
    assert stored.get("approve", 0) + stored.get("reject", 0) == ex.QUICK.pool
    assert stored.get("far_fill", 0) == acts.get("far", 0)
    assert stored.get("mask", 0) == acts.get("mask", 0)
    assert stored.get("plane_fill", 0) == acts.get("plane", 0)
    assert stored.get("undo", 0) == acts.get("plane undone", 0)
    assert sum(stored.values()) > ex.QUICK.pool  # corrections beside the decisions


def test_exports_follow_the_review(quick):
    work, r, _, _ = quick
    root = work / "data" / "exports"
    raw = [json.loads(line) for line in (root / "reviewed-0" / "manifest.jsonl").open()]
    last = ex.QUICK.curve[-1]
    done = [json.loads(line) for line in (root / f"reviewed-{last}" / "manifest.jsonl").open()]
    assert len(raw) == ex.QUICK.pool and {row["status"] for row in raw} == {"unreviewed"}
    assert len(done) == ex.QUICK.pool - r["review_actions"].get("reject", 0)
    assert {row["status"] for row in done} == {"approved"}
    if any(k in r["review_actions"] for k in ("far", "mask", "plane", "pair")):
        assert any(row["source"] == "corrected" for row in done)


def test_the_train_tab_service_shows_a_students_and_its_teachers_heldout_numbers(quick):
    """Item 4: for a run, the student's and its teacher's held-out numbers side by side with
    the data version (the export manifest it was trained on); admins only."""
    from depthweb.config import Settings
    from depthweb.services import heldout
    from depthweb.services.review import ReviewContext
    from depthweb.store import PermissionDeniedError

    work, r, _, _ = quick
    student = r["reviewed"][0]
    export_meta = json.loads((work / "data" / "exports" / f"reviewed-{ex.QUICK.curve[-1]}" /
                              "export.json").read_text())
    with ReviewContext.from_settings(Settings(data_dir=work / "data")) as ctx:
        assert student["name"] in heldout.student_names(ctx, ex.ADMIN)
        rows = heldout.heldout_rows(ctx, ex.ADMIN, student["name"])
        with pytest.raises(PermissionDeniedError):
            heldout.heldout_rows(ctx, "loop-rev1", student["name"])
    assert len(rows) == 1
    dataset, s_abs, t_abs, s_d1, t_d1, teacher, version = rows[0]
    assert dataset == ex.HELDOUT and teacher == ex.TEACHER
    assert s_abs == round(student["abs_rel"], 4) and t_abs == round(r["teacher"]["abs_rel"], 4)
    assert s_d1 == round(student["delta1"], 4) and t_d1 == round(r["teacher"]["delta1"], 4)
    assert version == export_meta["manifest_sha256"][:12] == student["data_version"][:12]
    assert len(heldout.HELDOUT_HEADERS) == len(rows[0])


def test_the_train_tab_serves_the_heldout_numbers_to_admins_only(quick):
    """The real app on the loop's database: an admin asks the Train tab's ``train_heldout``
    for a loop student and gets its and its teacher's numbers; a reviewer is refused."""
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    from depthweb.config import Settings
    from depthweb.server import start_in_thread
    from depthweb.ui.auth import clear_review_cache
    from tests.app.studio_server import free_port

    work, r, _, _ = quick
    settings = Settings(data_dir=work / "data", output_dir=work / "outputs", device="cpu",
                        review="on")
    running = start_in_thread(settings, port=free_port(), timeout_s=300)
    try:
        admin = Client(running.review_url, auth=(ex.ADMIN, "loop-admin-pw-123"), verbose=False,
                       analytics_enabled=False)
        table = admin.predict(r["reviewed"][0]["name"], api_name="/train_heldout")
        assert table["headers"][:3] == ["dataset", "student AbsRel", "teacher AbsRel"]
        assert table["data"][0][:3] == [ex.HELDOUT, round(r["reviewed"][0]["abs_rel"], 4),
                                         round(r["teacher"]["abs_rel"], 4)]
        rev = Client(running.review_url, auth=("loop-rev1", "loop-review-pw-123"),
                     verbose=False, analytics_enabled=False)
        with pytest.raises(AppError, match="needs admin"):
            rev.predict(r["reviewed"][0]["name"], api_name="/train_heldout")
    finally:
        running.close()
        clear_review_cache()


def test_the_diagnostics_read_a_finished_run(quick):
    """``bench.loop_diagnose`` on the quick run's folder: label accuracy and per-correction
    effects are finite; the far-ignored copy of the export has no disparity-0 pixel left."""
    from bench import loop_diagnose

    work, r, _, _ = quick
    labels = loop_diagnose.label_accuracy(work, ex.QUICK.curve[-1])
    assert labels["images"] == ex.QUICK.pool - r["review_actions"].get("reject", 0)
    assert all(math.isfinite(v) for v in labels.values())
    for effect in loop_diagnose.correction_effects(work).values():
        assert effect["n"] > 0 and math.isfinite(effect["mean_change"])
    src = work / "data" / "exports" / f"reviewed-{ex.QUICK.curve[-1]}"
    loop_diagnose._far_ignored(src, work / "far-ignored")
    rows = [json.loads(line) for line in (src / "manifest.jsonl").open()]
    for row in rows:
        label = np.load(work / "far-ignored" / row["label"])
        assert not (label == 0).any()
        assert np.array_equal(np.isnan(label), np.isnan(np.load(src / row["label"])) |
                              (np.load(src / row["label"]) == 0))
