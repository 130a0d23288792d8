"""The one model queue: model calls of both mounted apps take turns, one at a time.

The server (``depthweb.server``: Studio at ``/``, review platform at ``/review``) runs in this
process over a fresh database; the bundled student's loaded backend is made slow and watchful:
each call waits until another model call starts (or :data:`HOLD_S` passes) and records how many
ran at once. Gradio's queues are per app, so without the process-wide queue an admin's
pseudo-labelling run and a visitor's ``/predict`` would run together.
"""

from __future__ import annotations

import itertools
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from depthweb.config import Settings
from depthweb.services import model_queue

MODEL = "depthweb-student"
HOLD_S = 2.0
PASSWORD = "queue test password"


class Watch:
    """Wraps a backend's ``infer_batch``: counts calls running at once, holds each call until
    another one starts (at most ``HOLD_S``), records (start, end, batch size)."""

    def __init__(self, infer_batch) -> None:
        self.infer_batch = infer_batch
        self.lock = threading.Lock()
        self.started = threading.Condition(self.lock)
        self.active = self.most = self.calls = 0
        self.spans: list[tuple[float, float, int]] = []

    def __call__(self, images, intrinsics=None):
        with self.lock:
            self.active += 1
            self.calls += 1
            self.most = max(self.most, self.active)
            self.started.notify_all()
            t0, seen = time.monotonic(), self.calls
            self.started.wait_for(lambda: self.calls > seen, timeout=HOLD_S)
        try:
            return self.infer_batch(images, intrinsics)
        finally:
            with self.lock:
                self.active -= 1
                self.spans.append((t0, time.monotonic(), len(images)))


def test_the_queue_serves_one_call_at_a_time_in_arrival_order():
    queue = model_queue.ModelQueue()
    order, inside, most = [], [0], [0]
    gate = threading.Event()

    def call(i: int) -> None:
        with queue.turn(f"call {i}"):
            inside[0] += 1
            most[0] = max(most[0], inside[0])
            order.append(i)
            gate.wait(5)
            inside[0] -= 1

    with queue.turn("first"):  # hold the queue while the others line up
        threads = []
        for i in range(4):
            threads.append(threading.Thread(target=call, args=(i,)))
            threads[-1].start()
            deadline = time.monotonic() + 5
            while queue.waiting < i + 1 and time.monotonic() < deadline:
                time.sleep(0.01)
        assert queue.busy_with == "first" and queue.waiting == 4
    gate.set()
    for t in threads:
        t.join(10)
    assert order == [0, 1, 2, 3] and most[0] == 1 and queue.busy_with is None


def test_zero_gpu_wraps_model_calls_and_refuses_long_jobs(monkeypatch):
    import sys
    import types

    from depthweb.errors import InputError

    calls = []
    fake = types.ModuleType("spaces")
    fake.GPU = lambda fn, duration: calls.append(duration) or (lambda *a, **k: ("gpu", fn(*a)))
    monkeypatch.setitem(sys.modules, "spaces", fake)
    monkeypatch.delenv("SPACES_ZERO_GPU", raising=False)
    plain = model_queue.model_call(lambda images: len(images), "test")
    assert plain([1, 2]) == 2 and not calls  # off ZeroGPU: spaces is never used
    model_queue.refuse_long_job("Training", "run it elsewhere")  # nothing refused
    model_queue.check_pseudo_label_fits(None)
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    wrapped = model_queue.model_call(lambda images: len(images), "test")
    assert wrapped([1, 2, 3]) == ("gpu", 3)
    assert calls == [model_queue.predict_duration]
    assert model_queue.predict_duration([0] * 3) == 45
    assert model_queue.predict_duration([0] * 1000) == model_queue.ZERO_GPU_MAX_S
    with pytest.raises(InputError, match=r"does not fit ZeroGPU.*run it elsewhere"):
        model_queue.refuse_long_job("Training", "run it elsewhere")
    model_queue.check_pseudo_label_fits(model_queue.PSEUDO_LABEL_MAX_IMAGES)  # fits
    with pytest.raises(InputError, match="Pseudo-labelling more than"):
        model_queue.check_pseudo_label_fits(None)


def _seed(root) -> Settings:
    from argon2 import PasswordHasher

    from depthweb.services.review import ReviewContext, import_images
    from depthweb.store import SYSTEM, create_user, upgrade

    settings = Settings(data_dir=root / "data", output_dir=root / "out", device="cpu",
                        review="on")
    upgrade(settings.resolved_database_url)
    rng = np.random.default_rng(3)
    photos = []
    for i in range(3):
        photos.append(root / f"photo{i}.png")
        Image.fromarray(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)).save(photos[-1])
    with ReviewContext.from_settings(settings) as ctx:
        with ctx.session() as s:
            create_user(session=s, actor=SYSTEM, name="boss", password=PASSWORD, role="admin",
                        hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
        assert import_images(ctx, photos, dataset="queue", user=SYSTEM).added == 3
    return settings


@pytest.fixture
def server(tmp_path, monkeypatch):
    from depthweb.models.registry import load_backend
    from depthweb.server import start_in_thread
    from depthweb.ui import auth
    from tests.app.studio_server import free_port

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    settings = _seed(tmp_path)
    backend = load_backend(MODEL, settings=settings)  # the cached instance both apps use
    watch = Watch(backend.infer_batch)
    monkeypatch.setattr(backend, "infer_batch", watch)
    auth.clear_review_cache()
    running = start_in_thread(settings, port=free_port(), timeout_s=300)
    yield running, watch, tmp_path / "photo0.png"
    running.close()
    auth.clear_review_cache()


def test_model_calls_from_both_apps_are_serialised(server, tmp_path):
    from gradio_client import Client, handle_file

    running, watch, photo = server
    studio = Client(running.url, verbose=False, analytics_enabled=False,
                    download_files=str(tmp_path / "dl"))
    admin = Client(running.review_url, auth=("boss", PASSWORD), verbose=False,
                   analytics_enabled=False, download_files=str(tmp_path / "dl"))

    def predict() -> object:
        return studio.predict(handle_file(str(photo)), MODEL, 0, 0, 0, "", api_name="/predict")

    def pseudo_label() -> str:
        return admin.predict("queue", MODEL, "", 1, "none", 3, api_name="/admin_pseudo_label")

    with ThreadPoolExecutor(4) as pool:
        jobs = [pool.submit(pseudo_label), pool.submit(predict), pool.submit(predict)]
        results = [j.result(timeout=600) for j in jobs]
    assert "3" in results[0], results[0]  # three images labelled
    assert all(r is not None for r in results[1:])
    assert len(watch.spans) >= 5, watch.spans  # 3 pseudo-label batches + 2 predictions
    assert watch.most == 1, f"{watch.most} model calls ran at once: {watch.spans}"
    spans = sorted(watch.spans)
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans)), spans
