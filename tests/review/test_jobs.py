"""The jobs record (the admin's jobs table), on SQLite and PostgreSQL: a pseudo-label run is
recorded with done == total and updated once per committed batch, never per image; a failing
run is closed as failed with its reason; bad input and refused users leave no row; a job whose
process died shows as interrupted (pid gone, stale heartbeat) while a live one stays running;
CLI runs appear (and a CLI run killed with SIGKILL shows as interrupted); imports and exports
started by an admin are recorded too."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from depthweb.errors import InputError
from depthweb.services.review import admin, import_images, pseudo_label
from depthweb.services.review import jobs as jobs_mod
from depthweb.services.review.jobs import HEADERS, JobTracker, mark_stale
from depthweb.services.review.pseudolabel import Labeller
from depthweb.store import SYSTEM, NotFoundError, PermissionDeniedError
from depthweb.store.models import Job, JobKind
from tests.faults import kit
from tests.review.conftest import TEACHER

COL = {name: i for i, name in enumerate(HEADERS)}


def table(ctx, who: str = "admin") -> list[dict]:
    return [dict(zip(HEADERS, row, strict=True)) for row in admin.jobs_table(ctx, who)]


def n_jobs(ctx) -> int:
    with ctx.session(readonly=True) as s:
        return int(s.scalar(select(func.count()).select_from(Job)))


def _labelled_dataset(ctx, image_folder, n: int, name: str = "jobs") -> None:
    assert import_images(ctx, image_folder(range(n), scene=True), dataset=name,
                         user=SYSTEM).added == n


def test_a_pseudo_label_run_is_recorded_per_batch(ctx, users, image_folder, tiny_teacher,
                                                  monkeypatch):
    _labelled_dataset(ctx, image_folder, 5)
    seen: list[tuple[int, int | None]] = []
    original = JobTracker.progress

    def spy(self, done, total=None, message=None):
        seen.append((done, total))
        original(self, done, total, message)

    monkeypatch.setattr(JobTracker, "progress", spy)
    report = pseudo_label(ctx, "jobs", TEACHER, user=users["admin"], weights=str(tiny_teacher),
                          device="cpu", batch_size=2, uncertainty="none")
    assert report.labelled == 5
    assert seen == [(2, 5), (4, 5), (5, 5)]  # one update per committed batch of 2
    [row] = table(ctx)
    assert (row["kind"], row["dataset"], row["model"], row["started by"], row["status"],
            row["done"], row["total"]) == ("pseudo-label", "jobs", TEACHER, "admin", "done", 5, 5)
    assert "5 labelled" in row["message"] and row["finished (UTC)"] >= row["started (UTC)"]
    with ctx.session(readonly=True) as s:
        job = s.scalars(select(Job)).one()
        assert job.params["engine"] == "in-process" and job.params["batch_size"] == 2

    again = pseudo_label(ctx, "jobs", TEACHER, user=SYSTEM, weights=str(tiny_teacher),
                         device="cpu", batch_size=2, uncertainty="none")
    assert again.already_done == 5
    newest = table(ctx)[0]  # newest first
    assert (newest["started by"], newest["status"], newest["done"], newest["total"]) == (
        "system", "done", 0, 0)


def test_a_failing_run_is_closed_as_failed_with_its_reason(ctx, users, image_folder,
                                                           tiny_teacher, monkeypatch):
    _labelled_dataset(ctx, image_folder, 4)
    calls = {"n": 0}
    original = Labeller.predict

    def flaky(self, rgbs, cams):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("the accelerator fell over")
        return original(self, rgbs, cams)

    monkeypatch.setattr(Labeller, "predict", flaky)
    with pytest.raises(RuntimeError, match="fell over"):
        pseudo_label(ctx, "jobs", TEACHER, user=SYSTEM, weights=str(tiny_teacher),
                     device="cpu", batch_size=2, uncertainty="none")
    [row] = table(ctx)
    assert (row["status"], row["done"], row["total"]) == ("failed", 2, 4)
    assert row["message"] == "the accelerator fell over" and row["finished (UTC)"]


def test_bad_input_and_refused_users_leave_no_row(ctx, users, image_folder, tiny_teacher):
    _labelled_dataset(ctx, image_folder, 1)
    kw = {"weights": str(tiny_teacher), "device": "cpu"}
    with pytest.raises(NotFoundError):
        pseudo_label(ctx, "no-such-dataset", TEACHER, user=SYSTEM, **kw)
    with pytest.raises(InputError):
        pseudo_label(ctx, "jobs", TEACHER, user=SYSTEM, batch_size=0, **kw)
    with pytest.raises(PermissionDeniedError):
        pseudo_label(ctx, "jobs", TEACHER, user=users["rev"], **kw)
    with pytest.raises(PermissionDeniedError):
        admin.run_pseudo_label(ctx, "rev", "jobs", TEACHER, weights=str(tiny_teacher))
    with pytest.raises(InputError):
        admin.run_export(ctx, "admin", "jobs", "../outside")
    assert n_jobs(ctx) == 0
    for who in ("rev", "view", None):
        with pytest.raises(PermissionDeniedError):
            admin.jobs_table(ctx, who)


def _running_row(ctx, *, host: str, pid: int | None, beat_age_s: float) -> int:
    now = datetime.now(timezone.utc)
    with ctx.session() as s:
        job = Job(kind=JobKind.PSEUDO_LABEL.value, dataset="jobs", model=TEACHER, params={},
                  started_by="admin", host=host, pid=pid, status="running", done=3, total=9,
                  message="", started_at=now - timedelta(seconds=beat_age_s + 5),
                  heartbeat_at=now - timedelta(seconds=beat_age_s))
        s.add(job)
        s.flush()
        return int(job.id)


def test_a_job_whose_process_died_shows_as_interrupted(ctx, users, monkeypatch):
    import socket

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    here = socket.gethostname()
    dead_pid = _running_row(ctx, host=here, pid=gone.pid, beat_age_s=1)
    silent = _running_row(ctx, host="other-machine", pid=1, beat_age_s=jobs_mod.STALE_AFTER_S + 60)
    elsewhere = _running_row(ctx, host="other-machine", pid=1, beat_age_s=1)
    with JobTracker(ctx, JobKind.EXPORT, "jobs", SYSTEM, heartbeat_s=3600) as live:
        live.start(total=7)
        live.progress(2)
        rows = {r["job"]: r for r in table(ctx)}
        assert rows[dead_pid]["status"] == "interrupted"
        assert f"pid {gone.pid}" in rows[dead_pid]["message"] and rows[dead_pid]["finished (UTC)"]
        assert rows[silent]["status"] == "interrupted" and "heartbeat" in rows[silent]["message"]
        assert rows[elsewhere]["status"] == "running"  # another machine, heartbeat fresh
        assert (rows[live.id]["status"], rows[live.id]["done"]) == ("running", 2)
        # a live job wrongly taken for dead (a late heartbeat) is running again at its next sign
        with ctx.session() as s:
            s.get(Job, live.id).status = "interrupted"
        live.progress(5)
        assert {r["job"]: r["status"] for r in table(ctx)}[live.id] == "running"
        live.finish("exported")
    rows = {r["job"]: r for r in table(ctx)}
    assert (rows[live.id]["status"], rows[live.id]["done"]) == ("done", 7)
    assert mark_stale(ctx) == 0  # nothing left to mark: interrupted rows stay as they are
    assert rows[dead_pid]["status"] == "interrupted"


def test_a_job_stopped_by_ctrl_c_is_interrupted(ctx, users):
    with pytest.raises(KeyboardInterrupt), JobTracker(ctx, JobKind.IMPORT, "jobs", SYSTEM) as job:
        job.progress(1, 3)
        raise KeyboardInterrupt
    [row] = table(ctx)
    assert (row["status"], row["done"], row["total"]) == ("interrupted", 1, 3)


def test_admin_imports_and_exports_are_recorded(ctx, users, image_folder, tmp_path):
    folder = image_folder(range(3))
    files = sorted(folder.iterdir())
    report = admin.run_import(ctx, "admin", files, "web")
    assert report.added == 3
    [row] = table(ctx)
    assert (row["kind"], row["dataset"], row["started by"], row["status"], row["done"],
            row["total"]) == ("import", "web", "admin", "done", 3, 3)
    # an import that adds nothing (all duplicates here) leaves the store, jobs included, as it was
    assert admin.run_import(ctx, "admin", files, "web").added == 0
    assert n_jobs(ctx) == 1
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    assert admin.run_import(ctx, "admin", [bad], "web").failed
    assert n_jobs(ctx) == 1


@pytest.mark.slow
def test_cli_runs_appear_and_a_killed_one_is_interrupted(ctx, users, db_url, image_folder,
                                                         tiny_teacher, tmp_path):
    _labelled_dataset(ctx, image_folder, 4)
    argv = ["pseudo-label", "--dataset", "jobs", "-m", TEACHER, "--weights", str(tiny_teacher),
            "--batch-size", "1", "--uncertainty", "none"]
    pause = {"target": "depthweb.store.blobs:BlobStore.put_array", "when": "after", "nth": 3}
    child = kit.launch(argv, kit.child_env(ctx.settings.data_dir, db_url, pause),
                       tmp_path / "work", "killed")
    child.wait_paused()
    child.wait_for(lambda: table(ctx)[0]["done"] == 2, "the second batch's progress")
    mid = table(ctx)[0]
    assert (mid["started by"], mid["status"], mid["done"], mid["total"]) == (
        "system", "running", 2, 4)  # two batches committed, the third paused before its commit
    child.kill()
    killed = table(ctx)[0]
    assert (killed["job"], killed["status"], killed["done"]) == (mid["job"], "interrupted", 2)

    code, out = kit.run(argv, kit.child_env(ctx.settings.data_dir, db_url), tmp_path / "work",
                        "rerun")
    assert code == 0, out
    rows = table(ctx)
    assert len(rows) == 2 and rows[1]["status"] == "interrupted"
    assert (rows[0]["started by"], rows[0]["status"], rows[0]["done"], rows[0]["total"]) == (
        "system", "done", 2, 2)
    assert "2 labelled" in rows[0]["message"] and "2 already done" in rows[0]["message"]
