"""Admin use cases behind the Admin tab: users, queue counts, reviewer statistics,
adjudication of disagreements, gold tasks, the import / pseudo-label / export jobs and the jobs
table (:mod:`depthweb.services.review.jobs`: every such job, from the web or the CLI).

Like :mod:`depthweb.services.review.session`, every function takes the user *name* the web server
authenticated and loads the user inside the call; :func:`require_admin` (and the repository
functions themselves) refuse anyone who is not an active admin.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from depthweb.errors import InputError
from depthweb.services import model_queue
from depthweb.services.review.context import ReviewContext
from depthweb.services.review.exporter import ExportReport, export_dataset
from depthweb.services.review.importer import ImportReport, import_images
from depthweb.services.review.jobs import JobTracker, job_rows
from depthweb.services.review.pseudolabel import PseudoLabelReport, pseudo_label
from depthweb.services.review.session import load_user
from depthweb.store import Role, create_user, require_role, update_user
from depthweb.store.auth import list_users
from depthweb.store.integrity import CheckReport, check_blobs
from depthweb.store.models import Image, JobKind, Review, Task, TaskStatus, User
from depthweb.store.repo import (
    adjudicate,
    list_datasets,
    queue_counts,
    require_dataset,
    reviewer_stats,
    set_gold,
    set_required_reviews,
)
from depthweb.store.repo import mark_broken as _mark

ProgressFn = Callable[[int, int, str], None]
EXPORTS_DIRNAME = "exports"
JOB_UPDATE_S = 1.0
"""Import and export commit per file: their job row is updated at most this often."""


def require_admin(session: Session, username: str | None) -> User:
    user = load_user(session, username)
    require_role(user, Role.ADMIN)
    assert user is not None
    return user


def exports_root(ctx: ReviewContext) -> Path:
    """``<data_dir>/exports``: where exports started from the web app are written."""
    return Path(ctx.settings.data_dir).expanduser() / EXPORTS_DIRNAME


def dataset_names(ctx: ReviewContext, username: str | None) -> list[str]:
    """Dataset names (any active user may see them)."""
    with ctx.session(readonly=True) as s:
        require_role(load_user(s, username), *[r.value for r in Role])
        return [d.name for d in list_datasets(s)]


# ------------------------------------------------------------------------------ users
def users_table(ctx: ReviewContext, username: str | None) -> list[list]:
    """[[name, role, active, created (UTC)], ...] by name."""
    with ctx.session(readonly=True) as s:
        require_admin(s, username)
        return [[u.name, u.role, bool(u.active), u.created_at.strftime("%Y-%m-%d %H:%M")]
                for u in list_users(s)]


def add_user(ctx: ReviewContext, username: str | None, name: str, password: str,
             role: str) -> None:
    with ctx.session() as s:
        create_user(session=s, actor=require_admin(s, username), name=(name or "").strip(),
                    password=password or "", role=role)


def set_user(ctx: ReviewContext, username: str | None, name: str, role: str | None,
             active: bool | None) -> None:
    with ctx.session() as s:
        update_user(session=s, actor=require_admin(s, username), name=(name or "").strip(),
                    role=role or None, active=active)


# ------------------------------------------------------------------------------ crowd
@dataclass(frozen=True)
class Overview:
    counts: dict[str, int]
    reviewers: list[list]
    disagreements: list[list]
    required_reviews: int | None
    broken: list[list] | None = None


def _pct(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.0f} %"


def _disagreements(session: Session, dataset_id: int | None) -> list[list]:
    """Submitted tasks (their N reviews disagree): [task, version, image, reviews]."""
    stmt = (select(Task, Image.original_filename).join(Image, Image.id == Task.image_id)
            .where(Task.status == TaskStatus.SUBMITTED, ~Task.is_gold).order_by(Task.id))
    if dataset_id is not None:
        stmt = stmt.where(Task.dataset_id == dataset_id)
    rows = []
    for task, name in session.execute(stmt.limit(200)):
        reviews = session.execute(
            select(User.name, Review.decision, Review.reasons)
            .join(User, User.id == Review.reviewer_id)
            .where(Review.task_id == task.id, Review.active).order_by(Review.id)
        ).all()
        said = "; ".join(f"{who}: {d}" + (f" ({', '.join(r)})" if r else "")
                         for who, d, r in reviews)
        rows.append([task.id, task.version, name, said])
    return rows


def overview(ctx: ReviewContext, username: str | None, dataset: str | None) -> Overview:
    """Queue counts, per-reviewer statistics and open disagreements (all datasets when
    ``dataset`` is empty)."""
    with ctx.session(readonly=True) as s:
        require_admin(s, username)
        ds = require_dataset(s, dataset) if dataset else None
        ds_id = ds.id if ds is not None else None
        stats = [[r.name, r.n_reviews, r.n_approve, r.n_reject, _pct(r.agreement_rate),
                  r.n_gold, _pct(r.gold_accuracy)]
                 for r in reviewer_stats(s, dataset_id=ds_id)]
        return Overview(queue_counts(s, dataset_id=ds_id), stats, _disagreements(s, ds_id),
                        ds.required_reviews if ds is not None else None,
                        broken_tasks(s, ds_id))


def broken_tasks(session: Session, dataset_id: int | None) -> list[list]:
    """Tasks set aside as broken: [task, image, why]."""
    stmt = (select(Task.id, Image.original_filename, Task.broken_reason)
            .join(Image, Image.id == Task.image_id)
            .where(Task.status == TaskStatus.BROKEN).order_by(Task.id))
    if dataset_id is not None:
        stmt = stmt.where(Task.dataset_id == dataset_id)
    return [[int(t), name, why or ""] for t, name, why in session.execute(stmt.limit(500))]


def check_store(ctx: ReviewContext, *, mark_broken: bool = True) -> CheckReport:
    """Verify every blob against its sha256 (``depthweb db check``); the tasks that need a
    missing or corrupt file are set aside as broken (unless ``mark_broken`` is False), except
    when the file is a derived label (computed again when read)."""
    with ctx.session(readonly=True) as s:
        report = check_blobs(s, ctx.store)
    if mark_broken:
        reasons: dict[int, str] = {}
        for problem in report.problems:
            if problem.recomputable:
                continue  # a derived label: replayed and written again when it is read
            for task_id in problem.task_ids:
                reasons.setdefault(task_id, f"db check: {problem.sentence()}")
        for task_id, reason in reasons.items():
            with ctx.session() as s:
                _mark(session=s, task_id=task_id, reason=reason)
    return report


def adjudicate_task(ctx: ReviewContext, username: str | None, task_id: int,
                    expected_version: int, decision: str, note: str = "") -> int:
    """The admin's final approve / reject; returns the new task version."""
    with ctx.session() as s:
        task = adjudicate(session=s, task_id=int(task_id), user=require_admin(s, username),
                          expected_version=int(expected_version), decision=decision,
                          note=note or "")
        return task.version


def set_gold_answer(ctx: ReviewContext, username: str | None, task_id: int,
                    expected_version: int, answer: str | None) -> int:
    """Make a task gold with the known answer approve / reject (None: a normal task again)."""
    with ctx.session() as s:
        task = set_gold(session=s, user=require_admin(s, username), task_id=int(task_id),
                        expected_version=int(expected_version), gold_decision=answer or None)
        return task.version


def set_reviews_per_task(ctx: ReviewContext, username: str | None, dataset: str,
                         n: int) -> int:
    """N reviews per task for a dataset; returns how many open tasks changed."""
    if not dataset:
        raise InputError("Pick a dataset first.")
    with ctx.session() as s:
        user = require_admin(s, username)
        return set_required_reviews(session=s, user=user,
                                    dataset_id=require_dataset(s, dataset).id,
                                    required_reviews=int(n))


# ------------------------------------------------------------------------------ jobs
def _admin(ctx: ReviewContext, username: str | None) -> User:
    with ctx.session(readonly=True) as s:
        return require_admin(s, username)


def jobs_table(ctx: ReviewContext, username: str | None, limit: int = 50) -> list[list]:
    """The newest jobs (:data:`depthweb.services.review.jobs.HEADERS`); jobs whose process
    died are marked interrupted first."""
    _admin(ctx, username)
    return job_rows(ctx, limit)


def _tracked(job: JobTracker, progress: ProgressFn | None) -> ProgressFn:
    """``progress`` that also records the job (its row is written at the first file, so a
    job refused before any file leaves none), at most every :data:`JOB_UPDATE_S`."""
    last = [0.0]

    def report(done: int, total: int, name: str) -> None:
        now = time.monotonic()
        if done == total or now - last[0] >= JOB_UPDATE_S:
            last[0] = now
            job.progress(done, total)
        if progress is not None:
            progress(done, total, name)

    return report


def run_import(ctx: ReviewContext, username: str | None, files: Sequence[str | Path],
               dataset: str, progress: ProgressFn | None = None) -> ImportReport:
    """Import uploaded images or zips into ``dataset`` (created when missing). Recorded in
    the jobs table unless it added nothing (then the store is as it was; the result says why)."""
    user = _admin(ctx, username)
    if not (dataset or "").strip():
        raise InputError("Name the dataset to import into.")
    if not files:
        raise InputError("Upload at least one image or zip file first.")
    with JobTracker(ctx, JobKind.IMPORT, dataset.strip(), user,
                    params={"files": len(files)}) as job:
        report = import_images(ctx, list(files), dataset=dataset.strip(), user=user,
                               progress=_tracked(job, progress))
        if report.added:
            job.finish(report.summary())
        else:
            job.discard()
    return report


def run_pseudo_label(ctx: ReviewContext, username: str | None, dataset: str, model: str, *,
                     weights: str | None = None, batch_size: int = 4,
                     uncertainty: str = "flip", limit: int | None = None,
                     progress: ProgressFn | None = None) -> PseudoLabelReport:
    """Run the teacher over the dataset's unlabelled images (resumable, idempotent)."""
    user = _admin(ctx, username)
    if not dataset or not model:
        raise InputError("Pick a dataset and a teacher model first.")
    limit = int(limit) if limit else None
    model_queue.check_pseudo_label_fits(limit)
    return model_queue.run("pseudo-labelling", pseudo_label, ctx, dataset, model, user=user,
                           weights=weights or None, batch_size=int(batch_size),
                           uncertainty=uncertainty or "flip", limit=limit, progress=progress)


def run_export(ctx: ReviewContext, username: str | None, dataset: str, name: str,
               filter: str = "best", progress: ProgressFn | None = None) -> ExportReport:
    """Export ``dataset`` into ``<data_dir>/exports/<name>`` (a plain folder name)."""
    user = _admin(ctx, username)
    if not dataset or not (name or "").strip():
        raise InputError("Pick a dataset and name the export folder.")
    with JobTracker(ctx, JobKind.EXPORT, dataset, user,
                    params={"folder": name.strip(), "filter": filter}) as job:
        report = export_dataset(ctx, dataset, name.strip(), user=user, filter=filter,
                                base_dir=exports_root(ctx), progress=_tracked(job, progress))
        job.finish(report.summary())
    return report


def warm_previews(ctx: ReviewContext, dataset: str | None = None,
                  progress: Callable[[int, int, str], None] | None = None) -> tuple[int, int]:
    """Make the missing photo and teacher previews of every task still to review (new or in
    review; of ``dataset`` when given), as pseudo-labelling does for the tasks it creates: for
    data labelled on Ray, imported, or made before previews existed. Returns (tasks whose
    previews were made, tasks whose files are missing or corrupt: ``depthweb db check``)."""
    from depthweb.services.review.labels import image_rgb, prediction_intrinsics, read_array
    from depthweb.services.review.previews import DISPLAY_MAX_SIDE, warm_photo, warm_teacher
    from depthweb.store.errors import BrokenTaskError
    from depthweb.store.models import Dataset, Prediction

    if ctx.previews is None:
        return 0, 0
    made = failed = 0
    with ctx.session(readonly=True) as s:
        query = (select(Image, Prediction).join(Task, Task.image_id == Image.id)
                 .join(Prediction, Prediction.id == Task.prediction_id)
                 .where(Task.status.in_([TaskStatus.NEW, TaskStatus.IN_REVIEW]))
                 .order_by(Task.id))
        if dataset is not None:
            query = query.join(Dataset, Dataset.id == Image.dataset_id).where(
                Dataset.name == dataset)
        rows = s.execute(query).all()
        for i, (image, pred) in enumerate(rows):
            shape = tuple(int(n) for n in pred.depth_blob.shape[:2])
            try:
                wrote = warm_photo(ctx.previews, image.sha256, shape, lambda im=image: image_rgb(
                    ctx, im, preview_side=DISPLAY_MAX_SIDE))
                wrote |= warm_teacher(
                    ctx.previews, pred.depth_blob_sha256, pred.kind,
                    lambda p=pred: read_array(ctx, p.depth_blob, "teacher prediction",
                                              readonly=True),
                    prediction_intrinsics(pred), pred.model)
                made += int(wrote)
            except BrokenTaskError:
                failed += 1
            if progress is not None:
                progress(i + 1, len(rows), image.original_filename or f"image {image.id}")
    return made, failed
