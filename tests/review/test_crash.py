"""Must show: ``depthweb pseudo-label`` killed with SIGKILL mid-run, then re-run to completion:
no duplicate rows, no orphan blobs, no row without its file, every image exactly one prediction
and one task, and (SQLite) ``PRAGMA integrity_check`` = ok. On SQLite and PostgreSQL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from sqlalchemy import func, select

from depthweb.services.review import import_images
from depthweb.store import SYSTEM
from depthweb.store.engine import sqlite_integrity_check
from depthweb.store.models import Blob, Image, Prediction, Task
from tests.review.conftest import TEACHER

N_IMAGES = 24
KILL_AFTER = 3

pytestmark = pytest.mark.slow


def count(ctx, model) -> int:
    with ctx.session(readonly=True) as s:
        return int(s.scalar(select(func.count()).select_from(model)))


def cli(weights) -> list[str]:
    return [sys.executable, "-m", "depthweb", "pseudo-label", "--dataset", "crash",
            "-m", TEACHER, "--weights", str(weights), "--batch-size", "1", "--device", "cpu"]


def cli_env(ctx, db_url) -> dict[str, str]:
    return {**os.environ, "DEPTHWEB_DATA_DIR": str(ctx.settings.data_dir),
            "DEPTHWEB_DATABASE_URL": db_url, "HF_HUB_OFFLINE": "1"}


def test_killed_pseudo_label_run_resumes_cleanly(ctx, db_url, backend, image_folder,
                                                  tiny_teacher):
    report = import_images(ctx, image_folder(range(N_IMAGES), scene=True), dataset="crash",
                           user=SYSTEM)
    assert report.added == N_IMAGES
    proc = subprocess.Popen(cli(tiny_teacher), env=cli_env(ctx, db_url),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    try:
        while count(ctx, Prediction) < KILL_AFTER:
            assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
            assert time.monotonic() < deadline, "no prediction within 300 s"
            time.sleep(0.05)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    done = count(ctx, Prediction)
    assert KILL_AFTER <= done < N_IMAGES, "the job finished before it could be killed"
    assert count(ctx, Task) == done  # prediction and task are committed together

    rerun = subprocess.run(cli(tiny_teacher), env=cli_env(ctx, db_url),
                           capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"{N_IMAGES - done} labelled" in rerun.stdout and f"{done} already done" in rerun.stdout
    again = subprocess.run(cli(tiny_teacher), env=cli_env(ctx, db_url),
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and f"0 labelled by {TEACHER}, {N_IMAGES}" in again.stdout

    assert count(ctx, Prediction) == count(ctx, Task) == count(ctx, Image) == N_IMAGES
    with ctx.session(readonly=True) as s:
        per_image = s.execute(
            select(Image.id, func.count(Prediction.id))
            .outerjoin(Prediction, Prediction.image_id == Image.id).group_by(Image.id)
        ).all()
        assert sorted(n for _, n in per_image) == [1] * N_IMAGES
        dup_tasks = s.execute(
            select(Task.image_id).group_by(Task.image_id).having(func.count() > 1)).all()
        assert dup_tasks == []
        assert ctx.store.missing(s) == []  # no row without its file
        # the killed image's depth file, if it was written, was the same bytes the re-run
        # produced and is now referenced; only a temp file cut off mid-write could remain
        leftovers = ctx.store.orphans(s)
        assert all(p.name.startswith(".tmp-") for p in leftovers), leftovers
        assert ctx.store.gc(s, min_age_s=0) == leftovers
        assert ctx.store.orphans(s) == []
        referenced = {p.depth_blob_sha256 for p in s.scalars(select(Prediction))}
        referenced |= {i.blob_sha256 for i in s.scalars(select(Image))}
        assert set(s.scalars(select(Blob.sha256))) == referenced  # no unreferenced blob row
    if backend == "sqlite":
        assert sqlite_integrity_check(ctx.engine) == "ok"
