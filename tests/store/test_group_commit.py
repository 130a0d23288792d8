"""Group commit on SQLite (``depthweb.store.group_commit``): saves queued behind one another
share one COMMIT, a failing save rolls back alone, every caller returns only once its save is
committed, and a process killed mid-stream loses no save it had acknowledged."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from depthweb.store import StaleRevisionError, make_engine, session_scope
from depthweb.store.auth import get_user
from depthweb.store.engine import group_commit_of, sqlite_integrity_check
from depthweb.store.models import Revision, Task
from depthweb.store.repo import add_note, task_history

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


def _db_file(engine) -> str:
    return engine.url.database


def _committed_notes(db_file: str, task_id: int) -> list[str]:
    """Notes of ``task_id`` as another connection sees them (committed data only)."""
    with sqlite3.connect(db_file) as con:
        rows = con.execute("SELECT payload FROM revisions WHERE task_id = ? AND action = 'note'"
                           " ORDER BY task_version", (task_id,)).fetchall()
    return [str(r[0]) for r in rows]


def test_queued_saves_share_one_commit_and_a_failing_one_rolls_back_alone(make_world):
    world = make_world(n_tasks=4, a="reviewer", b="reviewer", c="reviewer", d="reviewer")
    engine, tasks = world.engine, world.task_ids
    group = group_commit_of(engine)
    assert group is not None
    db = _db_file(engine)
    holding, release = threading.Event(), threading.Event()
    outcome: dict[str, object] = {}
    seen_after: dict[str, list[str]] = {}

    def save(name: str, task_id: int, *, fail: bool = False, hold: bool = False) -> None:
        try:
            with session_scope(engine) as s:
                add_note(session=s, task_id=task_id, user=get_user(s, name),
                         expected_version=0, text=f"note by {name}")
                if hold:  # keep the turn until the others are queued behind this save
                    holding.set()
                    release.wait(30)
                if fail:
                    raise ValueError(f"{name} fails after writing its note")
            outcome[name] = "saved"
            seen_after[name] = _committed_notes(db, task_id)  # visible to others on return
        except ValueError as exc:
            outcome[name] = exc

    batches0, saves0 = group.batches, group.saves
    first = threading.Thread(target=save, args=("a", tasks[0]), kwargs={"hold": True})
    first.start()
    assert holding.wait(30)
    others = [threading.Thread(target=save, args=("b", tasks[1])),
              threading.Thread(target=save, args=("c", tasks[2]), kwargs={"fail": True}),
              threading.Thread(target=save, args=("d", tasks[3]))]
    for t in others:
        t.start()
    deadline = time.monotonic() + 30
    while len(group._queue) < 3 and time.monotonic() < deadline:  # all three wait their turn
        time.sleep(0.005)
    assert len(group._queue) == 3
    assert all(not _committed_notes(db, t) for t in tasks)  # nothing committed yet
    release.set()
    for t in [first, *others]:
        t.join(30)

    assert outcome["a"] == outcome["b"] == outcome["d"] == "saved"
    assert isinstance(outcome["c"], ValueError) and "c fails" in str(outcome["c"])
    assert (group.batches - batches0, group.saves - saves0) == (1, 3)  # one COMMIT for three
    for name, _task_id in (("a", tasks[0]), ("b", tasks[1]), ("d", tasks[3])):
        assert seen_after[name] == [f'{{"text": "note by {name}"}}']
    with session_scope(engine, readonly=True) as s:
        versions = {t: s.get(Task, t).version for t in tasks}
        assert versions == {tasks[0]: 1, tasks[1]: 1, tasks[2]: 0, tasks[3]: 1}
        assert s.scalar(select(func.count()).select_from(Revision)
                        .where(Revision.task_id == tasks[2])) == 0  # the failed save: nothing
    assert sqlite_integrity_check(engine) == "ok"


def test_checks_inside_a_batch_see_the_saves_before_them(make_world):
    """Two saves of the same task at the same version, queued into one batch: the second is
    refused as stale, exactly as if the first had committed on its own."""
    world = make_world(n_tasks=1, a="reviewer", b="reviewer")
    engine, (task_id,) = world.engine, world.task_ids
    holding, release = threading.Event(), threading.Event()
    outcome: dict[str, object] = {}

    def save(name: str, hold: bool) -> None:
        try:
            with session_scope(engine) as s:
                add_note(session=s, task_id=task_id, user=get_user(s, name),
                         expected_version=0, text=name)
                if hold:
                    holding.set()
                    release.wait(30)
            outcome[name] = "saved"
        except StaleRevisionError as exc:
            outcome[name] = exc

    first = threading.Thread(target=save, args=("a", True))
    first.start()
    assert holding.wait(30)
    second = threading.Thread(target=save, args=("b", False))
    second.start()
    group = group_commit_of(engine)
    deadline = time.monotonic() + 30
    while not group._queue and time.monotonic() < deadline:
        time.sleep(0.005)
    release.set()
    first.join(30)
    second.join(30)
    assert outcome["a"] == "saved" and isinstance(outcome["b"], StaleRevisionError)
    with session_scope(engine, readonly=True) as s:
        assert [r.task_version for r in task_history(s, task_id)] == [1]


def test_a_write_session_inside_another_is_refused_with_a_sentence(engine):
    outer = session_scope(engine)
    with pytest.raises(RuntimeError, match="inside another one"), outer, session_scope(engine):
        pass
    with session_scope(engine) as s:  # the queue is usable afterwards
        assert s.scalar(select(func.count()).select_from(Task)) >= 0


def _saver(url: str, names: list[str], task_ids: list[int], log_path: str) -> None:
    """Threads saving notes back to back; each save is logged (fsynced) once it returned."""
    engine = make_engine(url)
    lock = threading.Lock()
    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)

    def loop(name: str, task_id: int) -> None:
        version = 0
        while True:
            with session_scope(engine) as s:
                version = add_note(session=s, task_id=task_id, user=get_user(s, name),
                                   expected_version=version, text="x").task_version
            with lock:
                os.write(fd, f"{task_id} {version}\n".encode())
                os.fsync(fd)

    threads = [threading.Thread(target=loop, args=a, daemon=True)
               for a in zip(names, task_ids, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def test_killed_mid_batch_no_acknowledged_save_is_lost(make_world, db_url, tmp_path: Path):
    names = [f"r{i}" for i in range(6)]
    world = make_world(n_tasks=6, **{n: "reviewer" for n in names})
    log_path = tmp_path / "acked.txt"
    proc = mp.get_context("fork").Process(target=_saver, args=(db_url, names, world.task_ids,
                                                               str(log_path)))
    proc.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if log_path.exists() and log_path.read_text().count("\n") >= 60:
            break
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(10)
    acked: dict[int, int] = {}
    for line in log_path.read_text().splitlines():
        task_id, version = map(int, line.split())
        acked[task_id] = max(acked.get(task_id, 0), version)
    assert sum(acked.values()) >= 60
    engine = world.engine
    assert sqlite_integrity_check(engine) == "ok"
    with session_scope(engine, readonly=True) as s:
        for task_id in world.task_ids:
            version = s.get(Task, task_id).version
            assert version >= acked.get(task_id, 0)  # nothing acknowledged was lost
            history = task_history(s, task_id)  # one unbroken chain, no half-saved batch
            assert [r.task_version for r in history] == list(range(1, version + 1))
