"""The web workspace: a disk budget shared by the output folder and Gradio's temp folder
(oldest first, recent entries spared), clearing at start, and a temp folder of the app's own."""

from __future__ import annotations

import os
import time
from pathlib import Path

from depthweb.services.workspace import (
    Janitor,
    Workspace,
    gradio_entries,
    gradio_temp_dir,
    use_own_gradio_temp,
)

MiB = 1024 * 1024


def _entry(root: Path, name: str, size: int, age_s: float) -> Path:
    path = root / name
    if name.startswith("tmp"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\0" * size)
    else:
        path.mkdir(parents=True)
        (path / "file.bin").write_bytes(b"\0" * size)
    stamp = time.time() - age_s
    os.utime(path, (stamp, stamp))
    return path


def _workspace(tmp_path: Path, budget_mb: float) -> Workspace:
    return Workspace(tmp_path / "out", max_age_s=3600, budget_bytes=budget_mb * MiB,
                     gradio_root=tmp_path / "gradio")


def test_the_budget_deletes_the_oldest_across_both_folders(tmp_path):
    ws = _workspace(tmp_path, budget_mb=2.5)
    old_out = _entry(ws.root, "req-20261202T100000Z-aaaaaaaaaaaa", MiB, age_s=300)
    old_gradio = _entry(ws.gradio_root, "a" * 64, MiB, age_s=200)
    newer_out = _entry(ws.root, "req-20261202T100500Z-bbbbbbbbbbbb", MiB, age_s=100)
    spool = _entry(ws.gradio_root, "tmpab12cd34", MiB // 2, age_s=50)
    other = _entry(ws.gradio_root, "not-gradios", 4 * MiB, age_s=999)  # never touched
    assert ws.enforce_budget() == 1
    assert not old_out.exists() and old_gradio.exists() and newer_out.exists()
    assert spool.exists() and other.exists()
    ws2 = _workspace(tmp_path, budget_mb=0.1)
    ws2.enforce_budget()
    assert not old_gradio.exists() and not newer_out.exists() and not spool.exists()
    assert other.exists()


def test_entries_in_use_are_spared_by_the_budget(tmp_path):
    ws = _workspace(tmp_path, budget_mb=0.5)
    fresh = _entry(ws.gradio_root, "c" * 64, MiB, age_s=0)
    assert ws.enforce_budget() == 0 and fresh.exists()


def test_the_janitor_clears_what_an_earlier_run_left_once_per_process(tmp_path):
    ws = _workspace(tmp_path, budget_mb=100)
    left = [_entry(ws.root, "req-20261202T100000Z-cccccccccccc", 10, age_s=1),
            _entry(ws.gradio_root, "d" * 64, 10, age_s=1),
            _entry(ws.gradio_root, "tmpzz99yy88", 10, age_s=1)]
    janitor = Janitor(ws, interval_s=3600).start()
    try:
        assert not [p for p in left if p.exists()]
        mine = _entry(ws.gradio_root, "e" * 64, 10, age_s=1)
        second = Janitor(ws, interval_s=3600).start()  # a second server in this process
        second.stop()
        assert mine.exists()
    finally:
        janitor.stop()
    assert gradio_entries(ws.gradio_root) == [mine]


def test_the_app_gets_a_gradio_temp_folder_of_its_own(monkeypatch, tmp_path):
    monkeypatch.delenv("GRADIO_TEMP_DIR", raising=False)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    own = gradio_temp_dir()
    assert own.parent.name.startswith("depthweb-gradio-") and own.name == str(os.getpid())
    assert own != tmp_path / "gradio"  # not the machine-wide default
    assert use_own_gradio_temp() == own and os.environ["GRADIO_TEMP_DIR"] == str(own)
    assert own.is_dir() and (own.stat().st_mode & 0o777) == 0o700
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "configured"))
    assert gradio_temp_dir() == tmp_path / "configured"
