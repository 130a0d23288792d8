"""Save latency of the review store with 1, 10 and 50 concurrent reviewers.

Backends, all measured in the same run:
- ``sqlite``: ``depthweb.store.make_engine`` (WAL, synchronous=FULL, busy_timeout,
  foreign_keys, BEGIN IMMEDIATE for writes, the in-process writer queue with group commit);
- ``sqlite-onecommit``: the same with one COMMIT (one fsync) per save, the writer queue as it
  was before group commit: the baseline of the saves/s rows;
- ``sqlite-normal``: the same with ``synchronous=NORMAL`` (what the app used before), to show
  what durability against a power cut costs;
- ``sqlite-noqueue``: the same without the in-process writer queue (threads then wait in
  SQLite's busy handler), to show what the queue buys;
- ``sqlite-default``: the baseline, SQLAlchemy's default ``create_engine`` on a file in the
  default rollback-journal mode, no pragmas, the sqlite3 driver's own BEGIN;
- ``postgresql``: a throwaway server started like the tests do (``depthweb.store.pgserver``),
  default durability (fsync and synchronous_commit on).

A save is what the review page does on "save": a write session that appends a correction
(version-guarded UPDATE of the task + INSERT of a revision) and commits. Each reviewer saves on
its own task, so every save should succeed; the timer covers only the write session. Reviewers
are threads of one process (as in the Gradio app) or, with ``--processes``, separate processes.

    python -m bench.bench_store                # repo root; writes --out (see docs/benchmarks.md)
    python -m bench.bench_store --processes    # also reviewers as separate processes
    python -m bench.bench_store --reviewers 1 10 --saves 200 --out /tmp/b.md
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing as mp
import shlex
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from argon2 import PasswordHasher
from sqlalchemy import Engine, create_engine, event, select, text

from bench.common import Row, Section
from bench.store_report import filesystem, render, result_row
from depthweb.store import SYSTEM, BlobStore, create_user, make_engine, session_scope, upgrade
from depthweb.store.auth import get_user
from depthweb.store.models import Task
from depthweb.store.pgserver import PostgresServer, create_database, throwaway_postgres
from depthweb.store.repo import (
    add_correction,
    add_image,
    add_prediction,
    create_dataset,
    ensure_task,
)
from depthweb.types import DepthKind, Intrinsics

logger = logging.getLogger("bench_store")
BACKENDS = ("sqlite", "sqlite-onecommit", "sqlite-normal", "sqlite-noqueue", "sqlite-default",
            "postgresql")
REPO = Path(__file__).resolve().parents[1]


@dataclass
class Result:
    backend: str
    mode: str
    reviewers: int
    think_ms: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    stale: int = 0
    wall_s: float = 0.0

    def pct(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")


def bench_engine(backend: str, url: str, reviewers: int) -> Engine:
    pool = {"pool_size": reviewers + 2, "max_overflow": 10}
    if backend == "sqlite-default":
        return create_engine(url, **pool)
    engine = make_engine(url, writer_queue=backend != "sqlite-noqueue",
                         group_commit=backend != "sqlite-onecommit", **pool)
    if backend == "sqlite-normal":  # runs after make_engine's own pragmas
        event.listen(engine, "connect", _synchronous_normal)
    return engine


def _synchronous_normal(dbapi_connection: object, _record: object) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    try:
        cursor.execute("PRAGMA synchronous = NORMAL")
    finally:
        cursor.close()


def populate(url: str, reviewers: int, root: Path) -> list[tuple[str, int]]:
    """One reviewer user and one task per reviewer; returns (user name, task id) pairs."""
    hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)  # setup only
    store = BlobStore(root / "blobs")
    engine = make_engine(url)
    rng = np.random.default_rng(0)
    pairs = []
    with session_scope(engine) as s:
        ds = create_dataset(session=s, user=SYSTEM, name="bench")
        for i in range(reviewers):
            name = f"reviewer{i:02d}"
            create_user(
                session=s,
                actor=SYSTEM,
                name=name,
                password="benchmark pw",
                role="reviewer",
                hasher=hasher,
            )
            photo = store.put_bytes(rng.bytes(256), ".png")
            image, _ = add_image(
                session=s,
                user=SYSTEM,
                dataset_id=ds.id,
                blob=photo,
                store=store,
                width=64,
                height=48,
            )
            depth = store.put_array(rng.random((48, 64), dtype=np.float32))
            pred, _ = add_prediction(
                session=s,
                user=SYSTEM,
                image_id=image.id,
                model="bench",
                weights="0",
                kind=DepthKind.RELATIVE_DEPTH,
                depth=depth,
                intrinsics=Intrinsics.from_fov(64, 48, 60.0),
                store=store,
            )
            task, _ = ensure_task(session=s, user=SYSTEM, image_id=image.id, prediction_id=pred.id)
            pairs.append((name, task.id))
    engine.dispose()
    return pairs


@dataclass(frozen=True)
class Plan:
    saves: int  # per reviewer
    think_ms: float  # mean pause between saves (uniform in [0, 2 * think_ms])


def reviewer_loop(engine: Engine, name: str, task_id: int, plan: Plan, start: object) -> Result:
    res = Result("", "", 0)
    rng = np.random.default_rng(task_id)
    with session_scope(engine, readonly=True) as s:
        user = get_user(s, name)
    start.wait()  # type: ignore[attr-defined]
    for k in range(plan.saves):
        if plan.think_ms:
            time.sleep(rng.uniform(0.0, 2.0 * plan.think_ms) / 1000.0)
        try:
            with session_scope(engine, readonly=True) as s:
                version = s.scalar(select(Task.version).where(Task.id == task_id))
            t0 = time.perf_counter()
            with session_scope(engine) as s:
                add_correction(
                    session=s,
                    task_id=task_id,
                    user=user,
                    expected_version=version,
                    action="anchors",
                    payload={"anchors": [{"x": k % 64, "y": 5, "depth": 1.5}]},
                )
            res.latencies_ms.append((time.perf_counter() - t0) * 1000.0)
        except Exception as exc:  # counted and reported, e.g. "database is locked"
            res.errors.append(f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}")
    return res


def _merge(into: Result, part: Result) -> None:
    into.latencies_ms += part.latencies_ms
    into.errors += part.errors
    into.stale += part.stale


def run_threads(backend: str, url: str, pairs: list[tuple[str, int]], plan: Plan) -> Result:
    engine = bench_engine(backend, url, len(pairs))
    out = Result(backend, "threads", len(pairs), plan.think_ms)
    start = threading.Event()
    parts: list[Result] = []
    threads = [
        threading.Thread(
            target=lambda p=p: parts.append(reviewer_loop(engine, p[0], p[1], plan, start))
        )
        for p in pairs
    ]
    for t in threads:
        t.start()
    time.sleep(0.2)
    t0 = time.perf_counter()
    start.set()
    for t in threads:
        t.join()
    out.wall_s = time.perf_counter() - t0
    for p in parts:
        _merge(out, p)
    engine.dispose()
    return out


def _process_main(
    backend: str, url: str, name: str, task_id: int, plan: Plan, start: object, queue: mp.Queue
) -> None:
    engine = bench_engine(backend, url, 1)
    try:
        queue.put(reviewer_loop(engine, name, task_id, plan, start))
    finally:
        engine.dispose()


def run_processes(backend: str, url: str, pairs: list[tuple[str, int]], plan: Plan) -> Result:
    ctx = mp.get_context("fork")
    start, queue = ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(target=_process_main, args=(backend, url, name, tid, plan, start, queue))
        for name, tid in pairs
    ]
    for p in procs:
        p.start()
    time.sleep(0.5)
    t0 = time.perf_counter()
    start.set()
    parts = [queue.get(timeout=600) for _ in procs]
    out = Result(backend, "processes", len(pairs), plan.think_ms, wall_s=time.perf_counter() - t0)
    for p in procs:
        p.join()
    for part in parts:
        _merge(out, part)
    return out


class Databases:
    """Fresh, migrated databases: SQLite files in ``tmp``, or databases on one throwaway
    PostgreSQL server started on first use and stopped with ``stack``."""

    def __init__(self, stack: ExitStack, tmp: Path) -> None:
        self.stack, self.tmp = stack, tmp
        self.server: PostgresServer | None = None
        self.pg_version = "not run"

    def fresh(self, backend: str, tag: str) -> str:
        if backend == "postgresql":
            if self.server is None:
                self.server = self.stack.enter_context(throwaway_postgres(durable=True))
                self.pg_version = _server_version(self.server.url())
            create_database(self.server.url(), tag)
            url = self.server.url(tag)
            upgrade(url)
            return url
        url = f"sqlite:///{self.tmp / (tag + '.sqlite')}"
        upgrade(url)
        if backend == "sqlite-default":  # undo the WAL mode the migration engine switched on
            plain = create_engine(url)
            with plain.connect() as conn:
                conn.execute(text("PRAGMA journal_mode=DELETE"))
            plain.dispose()
        return url


def _server_version(url: str) -> str:
    eng = make_engine(url)
    try:
        with eng.connect() as conn:
            return str(conn.execute(text("SHOW server_version")).scalar())
    finally:
        eng.dispose()


@dataclass(frozen=True)
class Config:
    """What to measure: every (think, mode, reviewers, backend) combination."""

    reviewers: tuple[int, ...] = (1, 10, 50)
    saves: int = 1000  # per measurement (total) when think = 0
    think_ms: tuple[float, ...] = (0.0, 500.0)
    paced_saves: int = 30  # per reviewer when think > 0
    backends: tuple[str, ...] = BACKENDS
    processes: bool = False


def measure(cfg: Config, echo: bool = False) -> tuple[list[Result], str]:
    """All results (side by side per configuration) and the PostgreSQL server version."""
    modes = [("threads", run_threads)] + ([("processes", run_processes)] if cfg.processes else [])
    results: list[Result] = []
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
        dbs = Databases(stack, Path(tmp))
        for think in cfg.think_ms:
            for mode, runner in modes:
                for n in cfg.reviewers:
                    for backend in cfg.backends:  # side by side: same machine load
                        if mode == "processes" and backend == "sqlite-noqueue":
                            continue  # one thread per process: the queue changes nothing
                        tag = f"b_{backend.replace('-', '_')}_{mode}_{n}_{int(think)}"
                        url = dbs.fresh(backend, tag)
                        pairs = populate(url, n, Path(tmp) / tag)
                        per = max(1, cfg.saves // n) if think == 0 else cfg.paced_saves
                        res = runner(backend, url, pairs, Plan(saves=per, think_ms=think))
                        results.append(res)
                        if echo:
                            print(result_row(res), flush=True)
        pg_version = dbs.pg_version
    return results, pg_version


def summary_rows(results: list[Result]) -> list[Row]:
    """p50 / p95 per reviewer count (threads, back to back): SQLite ``make_engine`` against
    SQLAlchemy's default engine, PostgreSQL against ``make_engine`` SQLite."""
    by = {(r.backend, r.reviewers): r for r in results
          if r.mode == "threads" and r.think_ms == 0 and r.latencies_ms}
    rows = []
    for n in sorted({r.reviewers for r in results}):
        for backend, base, base_name in (
            ("sqlite", "sqlite-default", "SQLAlchemy default SQLite engine (no pragmas)"),
            ("sqlite", "sqlite-normal", "make_engine with synchronous=NORMAL, same run"),
            ("postgresql", "sqlite", "SQLite make_engine, same run"),
        ):
            ours, ref = by.get((backend, n)), by.get((base, n))
            if ours is None or ref is None:
                continue
            label = "SQLite make_engine" if backend == "sqlite" else "PostgreSQL"
            errs = f"errors {len(ours.errors)} vs {len(ref.errors)}"
            who = f"{n} concurrent reviewer{'s' if n > 1 else ''} (threads)"
            for q in (50, 95):
                rows.append(Row(f"review save p{q}: {label}, {who}",
                                ours.pct(q), ref.pct(q), "ms", baseline_name=base_name,
                                notes=f"saves back to back; {errs}"))
        for backend, base, base_name in (
            ("sqlite", "sqlite-onecommit", "one COMMIT per save (no group commit), same run"),
            ("postgresql", "sqlite", "SQLite make_engine (group commit), same run"),
        ):
            ours, ref = by.get((backend, n)), by.get((base, n))
            if ours is None or ref is None:
                continue
            label = ("SQLite make_engine (synchronous=FULL, group commit)"
                     if backend == "sqlite" else "PostgreSQL (fsync on)")
            rows.append(Row(f"review saves/s: {label}, {n} concurrent writer"
                            f"{'s' if n > 1 else ''} (threads)", rate(ours), rate(ref),
                            "saves/s", better="higher", baseline_name=base_name,
                            notes=f"errors {len(ours.errors)} vs {len(ref.errors)}"))
    return rows


def rate(r: Result) -> float:
    return len(r.latencies_ms) / r.wall_s if r.wall_s else float("nan")


def run(quick: bool = False) -> Section:
    """Summary rows and detail for ``python -m bench`` (quick: threads, think 0, 60 saves)."""
    if quick:
        cfg = Config(saves=60, think_ms=(0.0,), backends=(
            "sqlite", "sqlite-onecommit", "sqlite-normal", "sqlite-default", "postgresql"))
        command = ("python -m bench.bench_store --saves 60 --think-ms 0 --backends sqlite "
                   "sqlite-onecommit sqlite-normal sqlite-default postgresql")
    else:
        cfg = Config(processes=True)
        command = "python -m bench.bench_store --processes"
    results, pg_version = measure(cfg)
    fs = filesystem(Path(tempfile.gettempdir()))
    body = render(results, command, pg_version, fs)
    detail = body.split("\n", 2)[2]  # without the "# Store benchmark" heading
    return Section("store", "Review save latency: SQLite and PostgreSQL", command,
                   summary_rows(results), detail)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reviewers", type=int, nargs="+", default=[1, 10, 50])
    ap.add_argument(
        "--saves", type=int, default=1000, help="saves per measurement (total) when think = 0"
    )
    ap.add_argument("--think-ms", type=float, nargs="+", default=[0.0, 500.0])
    ap.add_argument("--paced-saves", type=int, default=30, help="saves per reviewer when think > 0")
    ap.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    ap.add_argument("--processes", action="store_true", help="also run reviewers as processes")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results_store.md")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    cfg = Config(tuple(args.reviewers), args.saves, tuple(args.think_ms), args.paced_saves,
                 tuple(args.backends), args.processes)
    results, pg_version = measure(cfg, echo=True)
    command = " ".join(["python -m bench.bench_store", *map(shlex.quote, argv or sys.argv[1:])])
    fs = filesystem(Path(tempfile.gettempdir()))
    args.out.write_text(render(results, command, pg_version, fs))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
