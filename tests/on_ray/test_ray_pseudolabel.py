"""``pseudo-label --engine ray`` on a local Ray (2 CPUs), against SQLite and PostgreSQL:
the same predictions as the in-process path; a model worker killed with SIGKILL mid-job and a
whole job (its driver) killed mid-job and run again both end with every image labelled exactly
once, one task each, and no row without its file. The jobs table records the Ray runs (done ==
total) and shows the killed driver's run as interrupted."""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import psutil
import pytest
from sqlalchemy import func, select

from depthweb.services.review import import_images, pseudo_label
from depthweb.services.review.jobs import HEADERS, job_rows
from depthweb.services.review.pseudolabel_ray import pseudo_label_ray
from depthweb.store import SYSTEM, BlobRef
from depthweb.store.models import Image, Prediction, Task
from tests.faults import checks, kit
from tests.review.conftest import TEACHER

# Slow: each Ray job starts its actors (a few seconds when quiet; minutes on this shared VM at a
# load average of 20-40, hence the long per-test timeout).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]
ACTOR_TITLE = "LabelActor"  # Ray names the actor process ray::MapWorker(MapBatches(LabelActor))
TIMEOUT_S = 600.0


def jobs(ctx) -> list[dict]:
    """The jobs table, newest first."""
    return [dict(zip(HEADERS, row, strict=True)) for row in job_rows(ctx)]


def by_name(ctx, dataset: str) -> dict[str, tuple[Prediction, np.ndarray]]:
    """image file name -> (prediction row, depth array) for the dataset."""
    out = {}
    with ctx.session(readonly=True) as s:
        rows = s.execute(select(Image, Prediction).join(Prediction)
                         .where(Image.dataset.has(name=dataset))).all()
        for image, pred in rows:
            depth = ctx.store.get_array(BlobRef.from_row(pred.depth_blob), verify=True)
            out[image.original_filename] = (pred, depth)
    return out


def assert_labelled_once(ctx, n_images: int) -> None:
    """Every image has one teacher prediction and one task; every row has its file."""
    with ctx.session(readonly=True) as s:
        per_image = s.execute(select(Prediction.image_id, func.count())
                              .where(Prediction.model == TEACHER)
                              .group_by(Prediction.image_id)).all()
        assert sorted(n for _, n in per_image) == [1] * n_images
        tasks = s.execute(select(Task.image_id, Task.prediction_id)).all()
        assert len(tasks) == len({i for i, _ in tasks}) == n_images
        preds = {p.image_id: p.id for p in s.scalars(select(Prediction))}
        assert all(preds[i] == p for i, p in tasks)
        assert checks.blob_problems(s, ctx.store) == [] and ctx.store.missing(s) == []


def test_ray_labels_like_the_in_process_path(ctx, ray_address, image_folder, tiny_teacher):
    folder = image_folder(range(5), scene=True)
    for name in ("local", "ray"):
        assert import_images(ctx, folder, dataset=name, user=SYSTEM).added == 5
    kw = {"user": SYSTEM, "weights": str(tiny_teacher), "device": "cpu", "batch_size": 2}
    local = pseudo_label(ctx, "local", TEACHER, **kw)
    ticks = []
    ray_run = pseudo_label_ray(ctx, "ray", TEACHER, workers=2,
                               progress=lambda d, t, n: ticks.append((d, t)), **kw)
    assert (ray_run.labelled, ray_run.failed, local.labelled) == (5, [], 5)
    assert ticks == [(i, 5) for i in range(1, 6)]
    ours, theirs = by_name(ctx, "ray"), by_name(ctx, "local")
    assert sorted(ours) == sorted(theirs) and len(ours) == 5
    for name, (pred, depth) in ours.items():
        ref_pred, ref_depth = theirs[name]
        np.testing.assert_allclose(depth, ref_depth, rtol=1e-4, atol=1e-6, equal_nan=True)
        assert (pred.kind, pred.weights, pred.intrinsics_source) == (
            ref_pred.kind, ref_pred.weights, ref_pred.intrinsics_source)
        assert (pred.fx, pred.cx) == pytest.approx((ref_pred.fx, ref_pred.cx))
        assert pred.uncertainty == pytest.approx(ref_pred.uncertainty, rel=1e-3, abs=1e-7)
    assert len({round(p.uncertainty, 9) for p, _ in ours.values()}) == 5
    ray_job = next(j for j in jobs(ctx) if j["dataset"] == "ray")
    assert (ray_job["status"], ray_job["done"], ray_job["total"]) == ("done", 5, 5)
    again = pseudo_label_ray(ctx, "ray", TEACHER, **kw)
    assert (again.labelled, again.already_done) == (0, 5)
    assert_labelled_once(ctx, 10)  # 5 images in each dataset


def _actor_pids() -> list[int]:
    return [p.pid for p in psutil.process_iter(["cmdline"])
            if ACTOR_TITLE in " ".join(p.info["cmdline"] or [])]


def _count(ctx) -> int:
    with ctx.session(readonly=True) as s:
        return int(s.scalar(select(func.count()).select_from(Prediction)))


def test_a_worker_killed_mid_job_is_retried_without_duplicates(ctx, ray_address,
                                                              image_folder, tiny_teacher):
    n = 8
    import_images(ctx, image_folder(range(n), scene=True), dataset="d", user=SYSTEM)
    killed: list[int] = []

    def killer() -> None:  # SIGKILL one model actor once the first rows are committed
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline and not (_count(ctx) >= 1 and _actor_pids()):
            time.sleep(0.05)
        pids = _actor_pids()
        if pids and _count(ctx) < n:
            os.kill(pids[0], signal.SIGKILL)
            killed.append(pids[0])

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    report = pseudo_label_ray(ctx, "d", TEACHER, user=SYSTEM, weights=str(tiny_teacher),
                              device="cpu", batch_size=1, workers=2,
                              uncertainty="none")
    thread.join(timeout=60)
    assert killed, "no model actor was killed mid-job"
    assert not psutil.pid_exists(killed[0]) or psutil.Process(killed[0]).status() == "zombie"
    assert report.failed == [] and report.labelled == n
    assert_labelled_once(ctx, n)


def test_a_killed_job_run_again_labels_each_image_once(ctx, db_url, ray_address, image_folder,
                                                       tiny_teacher, tmp_path):
    n = 8
    import_images(ctx, image_folder(range(n), scene=True), dataset="d", user=SYSTEM)
    argv = ["pseudo-label", "--dataset", "d", "-m", TEACHER, "--weights", str(tiny_teacher),
            "--batch-size", "1", "--uncertainty", "none", "--engine", "ray",
            "--address", ray_address, "--workers", "2"]
    job = kit.launch(argv, kit.child_env(ctx.settings.data_dir, db_url), tmp_path / "w", "job")
    job.wait_for(lambda: _count(ctx) >= 1, "a committed prediction", TIMEOUT_S)
    job.kill()
    done = _count(ctx)
    assert 1 <= done < n, "the job ended before it could be killed mid-way"
    [killed] = jobs(ctx)
    assert killed["status"] == "interrupted" and killed["done"] <= done  # its pid is gone
    assert checks.integrity_problems(db_url) == []
    with ctx.session(readonly=True) as s:
        assert checks.blob_problems(s, ctx.store) == []  # no row without its file

    rerun = pseudo_label_ray(ctx, "d", TEACHER, user=SYSTEM, weights=str(tiny_teacher),
                             device="cpu", batch_size=2, workers=2, uncertainty="none")
    assert (rerun.labelled, rerun.already_done, rerun.failed) == (n - done, done, [])
    assert [(j["status"], j["done"], j["total"]) for j in jobs(ctx)] == [
        ("done", n - done, n - done), ("interrupted", killed["done"], n)]
    assert_labelled_once(ctx, n)
    with ctx.session(readonly=True) as s:
        ctx.store.gc(s, min_age_s=0)
        assert ctx.store.orphans(s) == []
