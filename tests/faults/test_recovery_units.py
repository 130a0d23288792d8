"""Must show the pieces the crash tests rely on, one at a time: gc never deletes an old orphan
that a writer is re-using (its row is about to commit), a folder replacement leaves the new
folder and nothing else even without an atomic swap, one export per target at a time, a torn
metrics line does not stop a resume, and registering a student clears the half-copied folder
of a killed registration."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from depthweb import fsutil
from depthweb.errors import InputError
from depthweb.services.review.export_files import export_lock
from depthweb.store import SYSTEM, BlobStore, session_scope
from depthweb.store.repo import add_image, create_dataset
from depthweb.training.loop import read_metrics
from depthweb.training.registry import list_students, register_student
from tests.review.conftest import review_settings


def test_gc_spares_an_old_orphan_that_is_being_reused(tmp_path, db_url):
    from depthweb.store import make_engine

    store = BlobStore(tmp_path / "blobs")
    engine = make_engine(db_url)
    try:
        ref = store.put_bytes(b"killed before its row", ".png")  # a crash's leftover ...
        old = time.time() - 7200
        os.utime(store.path(ref), (old, old))
        with session_scope(engine, readonly=True) as s:
            assert store.orphans(s, min_age_s=3600) == [store.path(ref)]
        again = store.put_bytes(b"killed before its row", ".png")  # ... written again
        with session_scope(engine, readonly=True) as s:
            assert store.gc(s, min_age_s=3600) == []  # young again: its row may be coming
        with session_scope(engine) as s:
            ds = create_dataset(session=s, user=SYSTEM, name="d")
            add_image(session=s, user=SYSTEM, dataset_id=ds.id, blob=again, store=store,
                      width=1, height=1)
        with session_scope(engine, readonly=True) as s:
            assert store.orphans(s) == [] and store.missing(s) == []
    finally:
        engine.dispose()


@pytest.mark.parametrize("atomic_swap", [True, False])
def test_replace_dir_leaves_only_the_new_folder(tmp_path, monkeypatch, atomic_swap):
    if not atomic_swap:
        monkeypatch.setattr(fsutil, "exchange_paths", lambda a, b: False)
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "a").write_text("new")
    (tmp_path / "target").mkdir()
    (tmp_path / "target" / "b").write_text("old")
    fsutil.replace_dir(tmp_path / "new", tmp_path / "target")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["target"]
    assert [p.name for p in (tmp_path / "target").iterdir()] == ["a"]


def test_one_export_per_target_at_a_time(tmp_path):
    target = tmp_path / "exports" / "e1"
    with export_lock(target):
        with pytest.raises(InputError, match="Another export"), export_lock(target):
            pass
        with export_lock(tmp_path / "exports" / "e2"):  # another target is free
            pass
    with export_lock(target):  # released, and the lock file is gone after
        pass
    assert list((tmp_path / "exports").iterdir()) == []


def test_a_torn_metrics_line_is_skipped(tmp_path):
    lines = [json.dumps({"step": s, "loss": 1.0 / s}) for s in (1, 2)]
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines) + '\n{"step": 3, "lo')
    assert [m["step"] for m in read_metrics(tmp_path)] == [1, 2]


def test_registering_clears_a_killed_registrations_leftover(tmp_path):
    settings = review_settings(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}")
    student = tmp_path / "run" / "student"
    student.mkdir(parents=True)
    (student / "config.json").write_text(json.dumps({"model_type": "depthweb_student"}))
    (student / "model.safetensors").write_bytes(b"weights")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    root = tmp_path / "data" / "students"
    (root / f".tmp-s1-{dead}-abcd1234").mkdir(parents=True)  # killed mid-copy
    (root / f".tmp-s1-{os.getpid()}-live0000").mkdir()  # a registration still running
    register_student(tmp_path / "run", name="s1", settings=settings)
    assert sorted(p.name for p in root.iterdir()) == [f".tmp-s1-{os.getpid()}-live0000", "s1"]
    assert [r.name for r in list_students(settings)] == ["s1"]
