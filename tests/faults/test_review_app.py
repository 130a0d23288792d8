"""Must show: the launched review app (real photos, SQLite), SIGKILLed while a gradio_client
mask save is in flight (its blob file written, its commit not), restarted on the same data,
serves the same state (version, history and label picture of the task), takes saves at once,
and holds the uncommitted mask file only as an orphan that gc removes; killed again right after
two approvals returned, it keeps them, and the database passes its integrity check. (Kills
inside an open write transaction: ``test_review_saves.py``.)"""

from __future__ import annotations

import hashlib
import os
import signal
import time

import pytest
from sqlalchemy import select

from depthweb.config import Settings
from depthweb.services.review import ReviewContext
from depthweb.store.models import Task
from tests.faults import checks
from tests.faults.pauses import MARKER_ENV, pause_env
from tests.review_ui.server import PASSWORD, seed, start_review_app
from tests.review_ui.test_endpoints import editor_value

TASK, VERSION, LABEL, HISTORY, STATUS = 0, 1, 5, 7, 13
BLOB = {"target": "depthweb.store.blobs:BlobStore.put_array", "when": "after"}


def _serve(root, data_dir, weights, marker, *specs):
    env = {**pause_env(*specs), MARKER_ENV: str(marker)} if specs else {}
    return start_review_app(root, data_dir, weights, timeout_s=240, extra_env=env)


def _client(server, downloads):
    from gradio_client import Client

    return Client(server.url, auth=("rev", PASSWORD), verbose=False,
                  download_files=str(downloads), analytics_enabled=False)


def _state(client, task_id: int) -> tuple:
    """(version, history rows, sha256 of the label picture) as the app serves them."""
    page = client.predict(task_id, api_name="/review_open")
    with open(page[LABEL], "rb") as fh:
        picture = hashlib.sha256(fh.read()).hexdigest()
    return page[VERSION], page[HISTORY]["data"], picture


def _kill_when_paused(server, marker) -> None:
    deadline = time.monotonic() + 120
    while not (marker.exists() and "PAUSED" in marker.read_text()):
        assert server.process.poll() is None and time.monotonic() < deadline, server.log()
        time.sleep(0.01)
    os.kill(server.process.pid, signal.SIGKILL)
    assert server.process.wait(timeout=30) == -signal.SIGKILL


@pytest.mark.slow
@pytest.mark.real_data
def test_app_killed_mid_save_serves_the_same_state(tmp_path, tiny_teacher):
    from tests.conftest import require_shared_data

    data_dir = seed(tmp_path, require_shared_data(), tiny_teacher)
    settings = Settings(data_dir=data_dir, output_dir=tmp_path / "outputs", device="cpu")
    url = settings.resolved_database_url
    with ReviewContext.from_settings(settings) as ctx, ctx.session(readonly=True) as s:
        a, b = [(t.id, tuple(t.prediction.depth_blob.shape)) for t in
                s.scalars(select(Task).order_by(Task.id)).all()[:2]]

    marker = tmp_path / "server.marker"
    server = _serve(tmp_path, data_dir, tiny_teacher, marker, BLOB)
    client = _client(server, tmp_path / "dl1")
    before = _state(client, a[0])
    client.submit(a[0], before[0], editor_value(tmp_path, a[1], (5, 5, 60, 40)), "union",
                  api_name="/review_save_mask")
    _kill_when_paused(server, marker)  # the mask file is written, its revision is not
    assert checks.integrity_problems(url) == []

    server = _serve(tmp_path, data_dir, tiny_teacher, marker)
    try:
        client = _client(server, tmp_path / "dl2")
        assert _state(client, a[0]) == before  # the interrupted save did not happen
        with ReviewContext.from_settings(settings) as ctx, ctx.session(readonly=True) as s:
            orphans = ctx.store.orphans(s)
        assert [p.suffix for p in orphans] == [".npy"]  # the mask that was never committed
        assert checks.collect_orphans(url, ctx.store) == orphans
        for task_id, _ in (a, b):  # the restarted app takes saves at once
            done = client.predict(task_id, _state(client, task_id)[0], "",
                                  api_name="/review_approve")
            assert done[STATUS].startswith(f"Saved: approve on task {task_id}"), done[STATUS]
        os.kill(server.process.pid, signal.SIGKILL)  # right after the approvals returned
        assert server.process.wait(timeout=30) == -signal.SIGKILL
        assert checks.integrity_problems(url) == []
        with ReviewContext.from_settings(settings) as ctx, ctx.session(readonly=True) as s:
            assert {s.get(Task, t).status for t, _ in (a, b)} == {"approved"}  # kept
            assert checks.revision_problems(s) == []
            assert checks.blob_problems(s, ctx.store) == []
    finally:
        server.stop()
