"""Must show: ``depthweb pseudo-label`` killed with SIGKILL right after an image's depth file is
written and before its rows commit (while a reviewer approves a task the job already made),
then run again: it labels only what is missing, no image gets a second prediction or task, the
approvals made before and during the job stay (with their labels), the database passes its
integrity check, and after gc no orphan file is left. On SQLite and PostgreSQL.
(``tests/review/test_crash.py`` kills the same command at a random image, with re-runs as CLI.)"""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from depthweb.services.review import import_images, pseudo_label
from depthweb.services.review import session as review
from depthweb.store import SYSTEM
from depthweb.store.models import Image, Prediction, Task
from tests.faults import checks, kit
from tests.review.conftest import TEACHER, make_tasks, scene_disparity

N_EARLY, N_NEW = 3, 4
KILL_AT = N_EARLY + 2  # the job labels the early images first, then the new ones
PAUSE = {"target": "depthweb.store.blobs:BlobStore.put_array", "when": "after",
         "nth": KILL_AT}


def _tasks(ctx) -> dict[int, tuple[str, int, int, str]]:
    """task id -> (status, version, prediction id, prediction model)."""
    with ctx.session(readonly=True) as s:
        return {t.id: (t.status, t.version, t.prediction_id, t.prediction.model)
                for t in s.scalars(select(Task))}


def _start_job(ctx, db_url, tiny_teacher, tmp_path) -> kit.Child:
    argv = ["pseudo-label", "--dataset", "crash", "-m", TEACHER, "--weights", str(tiny_teacher),
            "--batch-size", "1", "--uncertainty", "none"]
    env = kit.child_env(ctx.settings.data_dir, db_url, PAUSE)
    return kit.launch(argv, env, tmp_path / "work", "pseudo-label")


@pytest.mark.slow
def test_killed_job_resumes_and_keeps_approvals(ctx, users, db_url, tiny_teacher, image_folder,
                                               tmp_path):
    early = make_tasks(ctx, [scene_disparity(i) for i in range(N_EARLY)], dataset="crash")
    for task_id in early[:2]:
        review.approve(ctx, "rev", task_id, 0)
    report = import_images(ctx, image_folder(range(N_NEW), scene=True), dataset="crash",
                           user=SYSTEM)
    assert report.added == N_NEW

    job = _start_job(ctx, db_url, tiny_teacher, tmp_path)
    job.wait_paused()  # image KILL_AT's depth file is written, its rows are not
    made = [t for t, (_, version, _, model) in _tasks(ctx).items()
            if model == TEACHER and version == 0]
    assert made, "the job committed no task before its pause"
    review.approve(ctx, "rev", made[0], _tasks(ctx)[made[0]][1])
    approved = {t: v for t, v in _tasks(ctx).items() if v[0] == "approved"}
    job.kill()

    assert checks.integrity_problems(db_url) == []
    with ctx.session(readonly=True) as s:
        done = s.scalar(select(func.count()).select_from(Prediction)
                        .where(Prediction.model == TEACHER))
        assert done == KILL_AT - 1
        assert checks.blob_problems(s, ctx.store) == []
        orphans = ctx.store.orphans(s)
    assert len(orphans) == 1 and orphans[0].suffix == ".npy"  # the uncommitted depth map

    rerun = pseudo_label(ctx, "crash", TEACHER, user=SYSTEM, weights=str(tiny_teacher),
                         batch_size=1, device="cpu", uncertainty="none")
    total = N_EARLY + N_NEW
    assert (rerun.labelled, rerun.already_done, rerun.failed) == (total - done, done, [])

    tasks = _tasks(ctx)
    assert {t: tasks[t] for t in approved} == approved  # same status, version and label
    with ctx.session(readonly=True) as s:
        per_image = s.execute(select(Prediction.image_id, func.count())
                              .where(Prediction.model == TEACHER)
                              .group_by(Prediction.image_id)).all()
        assert sorted(n for _, n in per_image) == [1] * total
        assert len(tasks) == s.scalar(select(func.count()).select_from(Image)) == total
        assert checks.revision_problems(s) == []
        assert checks.blob_problems(s, ctx.store) == []
    assert checks.integrity_problems(db_url) == []
    removed = checks.collect_orphans(db_url, ctx.store)  # the killed write, unless re-used
    assert set(removed) <= set(orphans) | {p for p in removed if ".tmp-" in p.name}
