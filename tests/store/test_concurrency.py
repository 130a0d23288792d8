"""Many reviewers saving at once: no lost write, stale saves refused, no "database is locked".

Each save is what the review page does: read the task's version (read-only session), think a
moment, then save against that version in a write session. Every attempt ends as a success or
as a refused stale save; the task's final version must equal its number of successful saves,
and its history must be one unbroken chain of exactly that many revisions.
"""

from __future__ import annotations

import multiprocessing as mp
import random
import threading
import time
from collections import Counter

import pytest
from sqlalchemy import Engine, select

from depthweb.store import StaleRevisionError, make_engine, session_scope
from depthweb.store.auth import get_user
from depthweb.store.errors import ClaimedError
from depthweb.store.models import Review, Task, User
from depthweb.store.repo import add_correction, add_note, task_history

N_REVIEWERS = 20
N_SAVES = 1000
N_TASKS = 5


def save_loop(engine: Engine, user: User, task_ids: list[int], n: int, seed: int) -> Counter:
    """``n`` save attempts by ``user``; counts ``ok:<task>``, ``stale`` and ``error:<text>``."""
    rng = random.Random(seed)
    out: Counter = Counter()
    for k in range(n):
        tid = rng.choice(task_ids)
        try:
            with session_scope(engine, readonly=True) as s:
                version = s.scalar(select(Task.version).where(Task.id == tid))
            time.sleep(rng.random() * 0.002)
            with session_scope(engine) as s:
                if k % 2:
                    add_note(
                        session=s,
                        task_id=tid,
                        user=user,
                        expected_version=version,
                        text=f"{user.name} {k}",
                    )
                else:
                    add_correction(
                        session=s,
                        task_id=tid,
                        user=user,
                        expected_version=version,
                        action="anchors",
                        payload={"anchors": [{"x": k, "y": 1, "depth": 2.0}]},
                    )
            out[f"ok:{tid}"] += 1
        except StaleRevisionError:
            out["stale"] += 1
        except ClaimedError:  # another reviewer's correction holds the task (a lease)
            out["claimed"] += 1
        except Exception as exc:  # every other failure is collected and must not happen
            out[f"error:{exc!r}"[:300]] += 1
    return out


def check_outcome(engine: Engine, task_ids: list[int], totals: Counter) -> None:
    errors = {k: v for k, v in totals.items() if k.startswith("error:")}
    assert errors == {}, errors  # in particular no "database is locked"
    ok = {tid: totals[f"ok:{tid}"] for tid in task_ids}
    assert sum(ok.values()) + totals["stale"] + totals["claimed"] == N_SAVES
    # there was real contention: stale saves, or saves refused on someone else's claim
    assert sum(ok.values()) > 0 and totals["stale"] + totals["claimed"] > 0
    with session_scope(engine, readonly=True) as s:
        for tid in task_ids:
            task = s.get(Task, tid)
            assert task.version == ok[tid]  # no lost write, no phantom write
            history = task_history(s, tid)  # raises unless it is a single chain
            assert [r.task_version for r in history] == list(range(1, ok[tid] + 1))
        assert s.scalars(select(Review)).all() == []


@pytest.fixture
def crowd(make_world):
    roles = {f"r{i:02d}": "reviewer" for i in range(N_REVIEWERS)}
    return make_world(n_tasks=N_TASKS, **roles)


def test_twenty_reviewer_threads_thousand_saves(crowd):
    users = [crowd.user(f"r{i:02d}") for i in range(N_REVIEWERS)]
    barrier = threading.Barrier(N_REVIEWERS)
    results: list[Counter] = []

    def reviewer(i: int) -> None:
        barrier.wait()
        results.append(
            save_loop(crowd.engine, users[i], crowd.task_ids, N_SAVES // N_REVIEWERS, seed=i)
        )

    threads = [threading.Thread(target=reviewer, args=(i,)) for i in range(N_REVIEWERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert len(results) == N_REVIEWERS
    check_outcome(crowd.engine, crowd.task_ids, sum(results, Counter()))


def _process_reviewer(
    url: str,
    name: str,
    task_ids: list[int],
    n: int,
    seed: int,
    start: mp.synchronize.Event,
    queue: mp.Queue,
) -> None:
    engine = make_engine(url)  # a fresh engine per process, never a forked pool
    try:
        with session_scope(engine, readonly=True) as s:
            user = get_user(s, name)
        start.wait(60)
        queue.put(save_loop(engine, user, task_ids, n, seed))
    finally:
        engine.dispose()


@pytest.mark.slow
def test_ten_reviewer_processes_thousand_saves(crowd, db_url):
    ctx = mp.get_context("fork")
    n_proc = 10
    start, queue = ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(
            target=_process_reviewer,
            args=(db_url, f"r{i:02d}", crowd.task_ids, N_SAVES // n_proc, 100 + i, start, queue),
        )
        for i in range(n_proc)
    ]
    for p in procs:
        p.start()
    start.set()
    results = [queue.get(timeout=300) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    check_outcome(crowd.engine, crowd.task_ids, sum(results, Counter()))
