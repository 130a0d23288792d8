"""Review actions through the launched app, one reviewer, on a 3024x2268 photo.

The app is launched as in the tests (``tests/review_ui/server.py``: a subprocess, SQLite file,
review on); ``--tasks`` tasks are seeded directly (each a distinct 3024x2268 JPEG with a
full-resolution float32 teacher disparity). One logged-in ``gradio_client`` then times, in the
same run: the floor (``/review_ping``, a trivial handler of the same app), ``next`` (claim and
show the next task), ``open``, ``note``, ``anchors`` (a correction: the label is re-fitted and
stored), ``undo`` and ``approve`` (which returns the next task's page). p50 / p95 per action and
p95 minus the floor are printed, with this process's CPU time (the load generator's own use).

    python -m bench.bench_review --tasks 6 --repeat 8
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
SIZE = (3024, 2268)


def _seed(root: Path, n_tasks: int) -> tuple[Path, list[int]]:
    import cv2

    from depthweb.config import Settings
    from depthweb.services.review import ReviewContext
    from depthweb.store import SYSTEM, create_user, upgrade
    from depthweb.store.repo import add_image, add_prediction, create_dataset, ensure_task
    from depthweb.types import DepthKind, Intrinsics
    from tests.review_ui.server import PASSWORD

    data_dir = root / "data"
    settings = Settings(data_dir=data_dir, output_dir=root / "out", device="cpu")
    upgrade(settings.resolved_database_url)
    base = cv2.imread(str(DATA / "wild" / "demo11.jpg"))[..., ::-1]
    base = cv2.resize(base, SIZE, interpolation=cv2.INTER_CUBIC)
    w, h = SIZE
    v, u = np.indices((h, w), dtype=np.float32)
    ids = []
    with ReviewContext.from_settings(settings) as ctx:
        with ctx.session() as s:
            create_user(session=s, actor=SYSTEM, name="r00", password=PASSWORD,
                        role="reviewer")
            ds = create_dataset(session=s, user=SYSTEM, name="big")
            ds_id = ds.id
        for i in range(n_tasks):
            rgb = base.copy()
            rgb[:8, : 8 * (i + 1)] = 255 - i  # distinct content
            _ok, jpg = cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
            photo = ctx.store.put_bytes(jpg.tobytes(), ".jpg")
            disp = ctx.store.put_array(0.5 + v / h + 0.1 * np.sin(u / 200.0) + 0.01 * i)
            with ctx.session() as s:
                image, _ = add_image(session=s, user=SYSTEM, dataset_id=ds_id, blob=photo,
                                     store=ctx.store, width=w, height=h,
                                     original_filename=f"big{i}.jpg")
                pred, _ = add_prediction(session=s, user=SYSTEM, image_id=image.id,
                                         model="teacher", weights="", intrinsics=Intrinsics
                                         .from_fov(w, h, 60.0), kind=DepthKind
                                         .RELATIVE_DISPARITY, depth=disp, store=ctx.store)
                task, _ = ensure_task(session=s, user=SYSTEM, image_id=image.id,
                                      prediction_id=pred.id, priority=float(n_tasks - i))
                ids.append(task.id)
    return data_dir, ids


def _timed(fn, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000.0)
    return out


def run(n_tasks: int, repeat: int) -> list[tuple[str, float, float]]:
    from gradio_client import Client

    from tests.builders import build_tiny_depth_anything
    from tests.review_ui.server import PASSWORD, start_review_app

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-review-") as tmp:
        root = Path(tmp)
        data_dir, _ids = _seed(root, n_tasks)
        weights = build_tiny_depth_anything(root / "teacher")
        server = start_review_app(root, data_dir, weights, timeout_s=600)
        try:
            c = Client(server.url, auth=("r00", PASSWORD), verbose=False,
                       analytics_enabled=False, httpx_kwargs={"timeout": 600})
            state: dict = {}

            def nxt():
                out = c.predict("big", api_name="/review_next")
                state["task"], state["version"] = out[0], out[1]

            def refresh():
                out = c.predict(state["task"], None, api_name="/review_open")
                state["version"] = out[1]

            def note():
                out = c.predict(state["task"], state["version"], "bench note", None,
                                api_name="/review_note")
                state["version"] = out[1]

            def anchors():
                table = {"headers": ["x (px)", "y (px)", "true depth (m)"],
                         "data": [[100, 100, 5.0], [2900, 2100, 2.0]]}
                out = c.predict(state["task"], state["version"], table, None,
                                api_name="/review_save_anchors")
                state["version"] = out[1]

            def undo():
                out = c.predict(state["task"], state["version"], None,
                                api_name="/review_undo")
                state["version"] = out[1]

            def approve():
                out = c.predict(state["task"], state["version"], "", None,
                                api_name="/review_approve")
                state["task"], state["version"] = out[0], out[1]

            floor = _timed(lambda: c.predict(api_name="/review_ping"), max(repeat, 10))
            rows.append(("floor (/review_ping)", *_pcts(floor)))
            rows.append(("next", *_pcts(_timed(nxt, 1))))
            rows.append(("open", *_pcts(_timed(refresh, repeat))))
            rows.append(("note", *_pcts(_timed(note, repeat))))
            corr = []
            for _ in range(max(1, repeat // 4)):
                corr += _timed(anchors, 1)
                corr += _timed(undo, 1)
            rows.append(("anchors + undo (corrections)", *_pcts(corr)))
            rows.append(("approve (returns the next page)",
                         *_pcts(_timed(approve, min(repeat, n_tasks - 1)))))
            c.close()
        finally:
            server.stop()
    return rows


def _pcts(ms: list[float]) -> tuple[float, float]:
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 95))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", type=int, default=6)
    ap.add_argument("--repeat", type=int, default=8)
    args = ap.parse_args(argv)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    for p in (str(REPO), str(REPO / "tests")):
        if p not in sys.path:
            sys.path.insert(0, p)
    t_cpu = time.process_time()
    t0 = time.perf_counter()
    rows = run(args.tasks, args.repeat)
    cpu, wall = time.process_time() - t_cpu, time.perf_counter() - t0
    floor = rows[0][2]
    print("| action (1 reviewer) | p50 ms | p95 ms | p95 - floor p95 ms |")
    print("|---|---:|---:|---:|")
    for name, p50, p95 in rows:
        print(f"| {name} | {p50:.0f} | {p95:.0f} | {p95 - floor:+.0f} |")
    ru = resource.getrusage(resource.RUSAGE_SELF)
    print(f"\nload generator (this process, incl. seeding): {cpu:.1f} s CPU in {wall:.1f} s "
          f"wall (max RSS {ru.ru_maxrss / 1024:.0f} MB); load average {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
