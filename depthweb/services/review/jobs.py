"""The jobs record behind the admin's jobs table: import, pseudo-label and export runs, started
from the web app or the CLI, with their progress and outcome.

A :class:`JobTracker` owns one row of ``jobs``. The row is written once the job has passed its
checks (bad input leaves no row), updated per committed batch (``done``/``total``, never per
image) and closed as ``done`` or ``failed`` with a one-line message; a job stopped by Ctrl+C or
a shutdown is closed as ``interrupted``. While the row is open a daemon thread refreshes its
``heartbeat_at`` every :data:`HEARTBEAT_S` seconds, so a job whose process died (SIGKILL, a
crash, a lost machine) is recognised when the table is read: a ``running`` row whose
heartbeat is older than :data:`STALE_AFTER_S`, or whose process on this host is gone, is
marked ``interrupted`` then (:func:`mark_stale`). Re-running an interrupted pseudo-label job
resumes it (the job itself is resumable); the old row stays as the record of the lost run.

Every write here is its own short transaction, apart from the job's own commits, so a failed
job write never undoes the job's work (it is logged instead).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import SQLAlchemyError

from depthweb.services.review.context import ReviewContext
from depthweb.store.auth import Actor
from depthweb.store.models import Job, JobKind, JobStatus, utcnow

log = logging.getLogger(__name__)

HEARTBEAT_S = 20.0
"""How often a running job's process refreshes its heartbeat."""
STALE_AFTER_S = 180.0
"""A running job whose heartbeat is older than this is shown as interrupted."""
MESSAGE_MAX = 255
_LIVE: set[int] = set()
"""Ids of the jobs this process is running (a row of this host and pid not in it is dead: the
process that wrote it was replaced, e.g. a restarted container whose server is pid 1 again)."""
_LIVE_LOCK = threading.Lock()
HEADERS = ["job", "kind", "dataset", "model", "started by", "started (UTC)", "finished (UTC)",
           "status", "done", "total", "message"]
"""The columns of :func:`job_rows` (the admin's jobs table)."""


def one_line(text: str) -> str:
    """``text`` on one line, cut to fit the ``message`` column."""
    line = " ".join(str(text).split())
    return line if len(line) <= MESSAGE_MAX else line[: MESSAGE_MAX - 3] + "..."


def actor_name(user: Actor) -> str:
    return str(getattr(user, "name", "") or "system")[:64]


class JobTracker:
    """One job's row. :meth:`start` writes it (``running``), :meth:`progress` updates the
    counts, :meth:`finish` / :meth:`fail` / :meth:`interrupt` close it. Used as a context
    manager, an exception leaving the block closes the row (``failed``; ``interrupted`` for
    ``KeyboardInterrupt``/``SystemExit``) and the heartbeat stops. Writes are best effort:
    a database error here is logged, never raised into the job."""

    def __init__(self, ctx: ReviewContext, kind: JobKind | str, dataset: str, user: Actor, *,
                 model: str | None = None, params: dict[str, Any] | None = None,
                 heartbeat_s: float = HEARTBEAT_S) -> None:
        self.ctx = ctx
        self.kind = JobKind(kind).value
        self.dataset = str(dataset)[:128]
        self.started_by = actor_name(user)
        self.model = None if model is None else str(model)[:128]
        self.params = dict(params or {})
        self.heartbeat_s = heartbeat_s
        self.id: int | None = None
        self.done = 0
        self.total: int | None = None
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None
        self._closed = False

    # -------------------------------------------------------------- lifecycle
    def __enter__(self) -> JobTracker:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc is not None and not self._closed:
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                self.interrupt(f"stopped ({exc_type.__name__})")
            else:
                self.fail(str(exc) or exc_type.__name__)
        self._stop_heartbeat()

    def start(self, total: int | None = None, message: str = "") -> None:
        """Write the row (``running``) and start the heartbeat; a second call does nothing."""
        if self.id is not None:
            return
        self.total = total
        now = utcnow()
        try:
            with self.ctx.session() as s:
                job = Job(kind=self.kind, dataset=self.dataset, model=self.model,
                          params=self.params, started_by=self.started_by,
                          host=socket.gethostname()[:255], pid=os.getpid(),
                          status=JobStatus.RUNNING.value, done=0, total=total,
                          message=one_line(message), started_at=now, heartbeat_at=now)
                s.add(job)
                s.flush()
                self.id = int(job.id)
            with _LIVE_LOCK:
                _LIVE.add(self.id)
        except SQLAlchemyError:
            log.exception("could not record the %s job of %s", self.kind, self.dataset)
            return
        self._beat = threading.Thread(target=self._heartbeat, name=f"job-{self.id}-heartbeat",
                                      daemon=True)
        self._beat.start()

    def progress(self, done: int, total: int | None = None, message: str | None = None) -> None:
        """Counts after a committed batch (starts the row first if needed)."""
        if total is not None:
            self.total = total
        self.done = done
        if self.id is None:
            self.start(self.total)
        values: dict[str, Any] = {"done": done, "total": self.total}
        if message is not None:
            values["message"] = one_line(message)
        self._update(values, running_only=True)

    def finish(self, message: str, *, done: int | None = None) -> None:
        """Close the row as ``done`` (``done`` defaults to the total)."""
        if self.id is None:
            self.start(self.total)
        final = done if done is not None else (self.total if self.total is not None
                                                else self.done)
        self._close(JobStatus.DONE, message, done=final)

    def fail(self, message: str) -> None:
        if self.id is not None:
            self._close(JobStatus.FAILED, message, done=self.done)

    def interrupt(self, message: str) -> None:
        if self.id is not None:
            self._close(JobStatus.INTERRUPTED, message, done=self.done)

    def discard(self) -> None:
        """Delete the row (a job that turned out to store nothing, e.g. an import whose every
        file was refused: its result line says why, and the store is left as it was)."""
        self._stop_heartbeat()
        self._closed = True
        if self.id is None:
            return
        try:
            with self.ctx.session() as s:
                s.execute(Job.__table__.delete().where(Job.id == self.id))
        except SQLAlchemyError:
            log.exception("could not delete job %s", self.id)
        self.id = None

    # -------------------------------------------------------------- internals
    def _close(self, status: JobStatus, message: str, *, done: int | None) -> None:
        self._stop_heartbeat()
        self._closed = True
        now = utcnow()
        self._update({"status": status.value, "message": one_line(message), "done": done,
                      "total": self.total, "finished_at": now, "heartbeat_at": now},
                     running_only=False)

    def _update(self, values: dict[str, Any], *, running_only: bool) -> None:
        """``running_only``: a sign of life (progress, heartbeat): it also sets the row
        ``running`` again if a reader took it for dead (a heartbeat delayed on a loaded
        machine), but never reopens a row closed as done or failed."""
        if self.id is None:
            return
        stmt = update(Job).where(Job.id == self.id)
        if running_only:
            stmt = stmt.where(Job.status.in_([JobStatus.RUNNING.value,
                                              JobStatus.INTERRUPTED.value]))
            values = {**values, "status": JobStatus.RUNNING.value, "finished_at": None,
                      "heartbeat_at": utcnow()}
        try:
            with self.ctx.session() as s:
                s.execute(stmt.values(**values))
        except SQLAlchemyError:
            log.exception("could not update job %s", self.id)

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            self._update({}, running_only=True)

    def _stop_heartbeat(self) -> None:
        self._stop.set()
        with _LIVE_LOCK:
            _LIVE.discard(self.id)
        beat, self._beat = self._beat, None
        if beat is not None and beat is not threading.current_thread():
            beat.join(timeout=5)


def _process_gone(pid: int | None) -> bool:
    """Whether process ``pid`` of this host is gone (False when unknown)."""
    if not pid or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OSError):
        return False
    return False


def mark_stale(ctx: ReviewContext, *, stale_after_s: float = STALE_AFTER_S,
               now: datetime | None = None) -> int:
    """Mark ``running`` jobs whose process died as ``interrupted``: no heartbeat for
    ``stale_after_s`` seconds, or (on this host) their process is gone. Returns how many."""
    now = now or datetime.now(timezone.utc)
    cutoff = now - timedelta(seconds=stale_after_s)
    host = socket.gethostname()[:255]
    with ctx.session(readonly=True) as s:
        running = s.execute(select(Job.id, Job.heartbeat_at, Job.host, Job.pid)
                            .where(Job.status == JobStatus.RUNNING.value)).all()
    with _LIVE_LOCK:
        live = set(_LIVE)
    dead = {}
    for job_id, beat, job_host, pid in running:
        if job_id in live:
            continue
        if beat < cutoff:
            dead[job_id] = "interrupted: its process stopped sending heartbeats"
        elif job_host == host and (pid == os.getpid() or _process_gone(pid)):
            dead[job_id] = f"interrupted: its process (pid {pid}) is gone"
    for job_id, why in dead.items():
        with ctx.session() as s:
            s.execute(update(Job).where(Job.id == job_id,
                                        Job.status == JobStatus.RUNNING.value)
                      .values(status=JobStatus.INTERRUPTED.value, message=one_line(why),
                              finished_at=now))
    if dead:
        log.warning("%d job(s) marked interrupted (their process died)", len(dead))
    return len(dead)


def _when(value: datetime | None) -> str:
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")


def job_rows(ctx: ReviewContext, limit: int = 50) -> list[list]:
    """The newest ``limit`` jobs as table rows (:data:`HEADERS`), dead ones marked first.
    No role check here: callers check (:func:`depthweb.services.review.admin.jobs_table`)."""
    mark_stale(ctx)
    with ctx.session(readonly=True) as s:
        jobs = s.scalars(select(Job).order_by(Job.id.desc()).limit(limit)).all()
        return [[j.id, j.kind.replace("_", "-"), j.dataset, j.model or "", j.started_by,
                 _when(j.started_at), _when(j.finished_at), j.status, j.done,
                 "" if j.total is None else j.total, j.message] for j in jobs]
