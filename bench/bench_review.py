"""Review actions through the launched app on 3024x2268 photos: one reviewer, then 50.

The app is launched as in the tests (``tests/review_ui/server.py``: a subprocess, SQLite file,
review on, nothing else in flight); tasks are seeded directly (each a distinct 3024x2268 JPEG
with a full-resolution float32 teacher disparity, as pseudo-labelling stores them). Every
reviewer is its own logged-in ``gradio_client`` (no downloads) naming its own address in
``X-Forwarded-For`` (the server trusts loopback as a proxy, as ``tests/load`` does). The tasks'
review previews (display-size photo and teacher pictures) are made after seeding, as
``pseudo-label`` makes them for the tasks it creates.

1. **One reviewer**, in the same run as the floor (``/review_ping``, a trivial handler of the
   same app): ``next``, ``open``, ``note``, ``anchors`` (a correction: the 7-megapixel label is
   re-fitted, written and shown), ``undo`` and ``approve`` (which returns the next task's
   page). Timed: the action's round trip (the answer carries the page, pictures as URLs), and
   the same plus fetching the pictures whose URL changed (what a browser with a cache fetches).
   Baseline in the same run: the same approvals with the previews folder moved aside, so the
   next page's pictures are made from the stored photo and prediction on the click (the path
   before previews).
2. **N reviewers** (default 50) with a think time (uniform 4-6 s, 5 s mean) between actions,
   for ``--seconds``: each claims a task, saves a note, approves (the next page comes back);
   one cycle in five also saves anchors and undoes them. p50 / p95 per action and overall,
   errors (any refused or failed call).

Reported with each phase: the load generator's own CPU (this process: every client thread)
and the server's CPU, both in seconds and in cores over the phase.

    python -m bench.bench_review                      # 1 reviewer, then 50 for 60 s
    python -m bench.bench_review --quick              # small (CI quick bench)
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
SIZE = (3024, 2268)
TARGET_OVER_FLOOR_MS = 40.0
TARGET_CROWD_P95_MS = 400.0
ANCHORS = {"headers": ["x (px)", "y (px)", "true depth (m)"],
           "data": [[100, 100, 5.0], [2900, 2100, 2.0]]}


@dataclass
class Config:
    reviewers: int = 50
    seconds: float = 60.0
    think_s: tuple[float, float] = (4.0, 6.0)
    repeat: int = 10
    correction_every: int = 5

    @property
    def tasks(self) -> int:  # enough that nobody runs out: one approval per ~2.4 thinks
        per = self.seconds / (2.4 * sum(self.think_s) / 2) + 2
        return int(self.reviewers * per) + self.repeat + 4


@dataclass
class Timings:
    ms: dict[str, list[float]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, action: str, ms: float) -> None:
        with self.lock:
            self.ms.setdefault(action, []).append(ms)

    def error(self, text: str) -> None:
        with self.lock:
            self.errors.append(text)

    def all(self) -> list[float]:
        return [x for v in self.ms.values() for x in v]


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


# ------------------------------------------------------------------------------ seeding
def seed(root: Path, n_tasks: int, n_users: int, previews: bool = True) -> Path:
    """Users r00.. (reviewers) and ``n_tasks`` tasks of distinct 3024x2268 photos, with their
    review previews made ahead (as ``pseudo-label`` makes them) unless ``previews`` is False."""
    import cv2
    from argon2 import PasswordHasher

    from depthweb.config import Settings
    from depthweb.services.review import ReviewContext
    from depthweb.store import SYSTEM, create_user, upgrade
    from depthweb.store.repo import add_image, add_prediction, create_dataset, ensure_task
    from depthweb.types import DepthKind, Intrinsics
    from tests.review_ui.server import PASSWORD

    data_dir = root / "data"
    settings = Settings(data_dir=data_dir, output_dir=root / "out", device="cpu")
    upgrade(settings.resolved_database_url)
    base = cv2.imread(str(DATA / "wild" / "demo11.jpg"))
    base = cv2.resize(base, SIZE, interpolation=cv2.INTER_CUBIC)
    w, h = SIZE
    v, u = np.indices((h, w), dtype=np.float32)
    fast = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    with ReviewContext.from_settings(settings) as ctx:
        with ctx.session() as s:
            for i in range(n_users):
                create_user(session=s, actor=SYSTEM, name=f"r{i:02d}", password=PASSWORD,
                            role="reviewer", hasher=fast)
            ds_id = create_dataset(session=s, user=SYSTEM, name="big").id
        disp = ctx.store.put_array(0.5 + v / h + 0.1 * np.sin(u / 200.0))
        for i in range(n_tasks):
            bgr = base.copy()
            bgr[:16, : 16 * (1 + i % 180)] = (i * 37) % 256  # distinct content
            bgr[16:32, : 16 * (1 + i // 180)] = 255 - (i * 11) % 256
            _ok, jpg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 90])
            photo = ctx.store.put_bytes(jpg.tobytes(), ".jpg")
            with ctx.session() as s:
                image, _ = add_image(session=s, user=SYSTEM, dataset_id=ds_id, blob=photo,
                                     store=ctx.store, width=w, height=h,
                                     original_filename=f"big{i}.jpg")
                pred, _ = add_prediction(session=s, user=SYSTEM, image_id=image.id,
                                         model="teacher", weights="", intrinsics=Intrinsics
                                         .from_fov(w, h, 60.0), kind=DepthKind
                                         .RELATIVE_DISPARITY, depth=disp, store=ctx.store)
                ensure_task(session=s, user=SYSTEM, image_id=image.id, prediction_id=pred.id,
                            priority=float(n_tasks - i))
        if previews:  # what pseudo-labelling writes for the tasks it creates
            from depthweb.services.review.admin import warm_previews

            warm_previews(ctx)
    return data_dir


# ------------------------------------------------------------------------------ clients
def address_of(index: int) -> str:
    return f"198.51.{100 + index // 250}.{1 + index % 250}"


def connect(url: str, n: int) -> list:
    from gradio_client import Client

    from tests.review_ui.server import PASSWORD

    def make(i: int):
        return Client(url, auth=(f"r{i:02d}", PASSWORD), verbose=False, download_files=False,
                      analytics_enabled=False, headers={"X-Forwarded-For": address_of(i)},
                      httpx_kwargs={"timeout": 300})

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(make, range(n)))


def picture_urls(out) -> dict[int, str]:
    """The picture URLs of an action's outputs, by output position."""
    found = {}
    for i, value in enumerate(out):
        if isinstance(value, dict):
            pic = value.get("background", value) if "background" in value else value
            if isinstance(pic, dict) and pic.get("url"):
                found[i] = pic["url"]
    return found


class Reviewer:
    """One reviewer's state: the task on the page, its version, the pictures it holds."""

    def __init__(self, client, timings: Timings) -> None:
        self.c, self.t = client, timings
        self.task: int | None = None
        self.version: int | None = None
        self.seen: dict[int, str] = {}

    def call(self, action: str, *args, api_name: str, fetch: bool = False):
        import httpx

        t0 = time.perf_counter()
        try:
            out = self.c.predict(*args, api_name=api_name)
        except Exception as exc:  # every refused or failed call is an error here
            self.t.error(f"{action}: {type(exc).__name__}: {str(exc)[:160]}")
            return None
        ms = (time.perf_counter() - t0) * 1000.0
        self.t.add(action, ms)
        if fetch and action != "ping":
            urls = picture_urls(out)
            new = [u for k, u in urls.items() if self.seen.get(k) != u]
            for u in new:
                r = httpx.get(u, headers=self.c.headers, cookies=self.c.cookies, timeout=60)
                r.raise_for_status()
            self.seen = urls
            self.t.add(f"{action} + pictures", (time.perf_counter() - t0) * 1000.0)
        if action != "ping":
            if api_name in ("/review_next", "/review_approve"):
                self.task = out[0]
            self.version = out[1]
        return out

    def ping(self, **kw):
        return self.call("ping", api_name="/review_ping", **kw)

    def next(self, **kw):
        return self.call("next", "", api_name="/review_next", **kw)

    def open(self, **kw):
        return self.call("open", self.task, None, api_name="/review_open", **kw)

    def note(self, **kw):
        return self.call("note", self.task, self.version, "bench note", None,
                         api_name="/review_note", **kw)

    def anchors(self, **kw):
        return self.call("anchors", self.task, self.version, ANCHORS, None,
                         api_name="/review_save_anchors", **kw)

    def undo(self, **kw):
        return self.call("undo", self.task, self.version, None, api_name="/review_undo", **kw)

    def approve(self, **kw):
        return self.call("approve", self.task, self.version, "", None,
                         api_name="/review_approve", **kw)


# ------------------------------------------------------------------------------ phases
def cpu_of(pid: int) -> float:
    """CPU seconds (user + system) of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Phase:
    timings: Timings
    wall_s: float
    client_cpu_s: float
    server_cpu_s: float


def measured(server_pid: int, body) -> Phase:
    timings = Timings()
    c0, s0, t0 = time.process_time(), cpu_of(server_pid), time.perf_counter()
    body(timings)
    return Phase(timings, time.perf_counter() - t0, time.process_time() - c0,
                 cpu_of(server_pid) - s0)


def one_reviewer(client, cfg: Config, t: Timings, previews: Path | None = None) -> None:
    """The solo sequence; with ``previews`` (the server's previews folder) it ends with
    approvals whose next page has none (today's path before previews: the baseline)."""
    r = Reviewer(client, t)
    for _ in range(3):  # warm up (first page decodes, imports)
        r.ping()
    r.next(fetch=True)
    for _ in range(cfg.repeat):
        r.ping(fetch=True)
        r.open(fetch=True)
        r.note(fetch=True)
    for _ in range(max(2, cfg.repeat // 2)):
        r.anchors(fetch=True)
        r.undo(fetch=True)
    for _ in range(cfg.repeat):
        r.approve(fetch=True)
        r.ping(fetch=True)
    r.next(fetch=True)
    if previews is not None:  # the same approvals when the next task has no previews yet
        aside = previews.with_name(previews.name + ".aside")
        previews.rename(aside)  # the server finds none and makes them on the click
        try:
            for _ in range(cfg.repeat):
                r.call(NO_PREVIEWS, r.task, r.version, "", None, api_name="/review_approve",
                       fetch=True)
                r.ping(fetch=True)
        finally:
            shutil.rmtree(previews, ignore_errors=True)
            aside.rename(previews)


def crowd(clients: list, cfg: Config, t: Timings) -> None:
    stop = time.perf_counter() + cfg.seconds

    def think(rng: random.Random) -> bool:
        time.sleep(rng.uniform(*cfg.think_s))
        return time.perf_counter() < stop

    def work(i: int) -> None:
        rng = random.Random(i)
        time.sleep(rng.uniform(0, cfg.think_s[1]))  # arrivals spread over one think time
        r = Reviewer(clients[i], t)
        if r.next() is None or r.task is None:
            return
        cycle = 0
        while think(rng):
            if r.note() is None or not think(rng):
                break
            cycle += 1
            corrects = cycle % cfg.correction_every == i % cfg.correction_every
            if corrects and (r.anchors() is None or not think(rng) or r.undo() is None
                             or not think(rng)):
                break
            if r.approve() is None or r.task is None:
                break

    with ThreadPoolExecutor(len(clients)) as pool:
        list(pool.map(work, range(len(clients))))


def measure(cfg: Config) -> dict:
    from tests.builders import build_tiny_depth_anything
    from tests.review_ui.server import start_review_app

    with tempfile.TemporaryDirectory(prefix="bench-review-") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        data_dir = seed(root, cfg.tasks, cfg.reviewers)
        seed_s = time.perf_counter() - t0
        weights = build_tiny_depth_anything(root / "teacher")
        server = start_review_app(root, data_dir, weights, timeout_s=600, extra_env={
            "DEPTHWEB_TRUSTED_PROXIES": "127.0.0.1"})
        clients: list = []
        try:
            t0 = time.perf_counter()
            clients = connect(server.url, cfg.reviewers)
            login_s = time.perf_counter() - t0
            pid = server.process.pid
            solo = measured(pid, lambda t: one_reviewer(clients[0], cfg, t,
                                                        data_dir / "previews"))
            crowded = measured(pid, lambda t: crowd(clients, cfg, t))
        finally:
            with ThreadPoolExecutor(16) as pool:
                list(pool.map(lambda c: c.close(), clients))
            server.stop()
    return {"solo": solo, "crowd": crowded, "seed_s": seed_s, "login_s": login_s,
            "tasks": cfg.tasks}


# ------------------------------------------------------------------------------ report
NO_PREVIEWS = "approve, next page without previews"
SOLO_ORDER = ("ping", "next", "open", "note", "anchors", "undo", "approve", NO_PREVIEWS)


def tables(res: dict, cfg: Config) -> list[str]:
    solo, crowded = res["solo"], res["crowd"]
    floor = pct(solo.timings.ms.get("ping", []), 95)
    lines = ["1 reviewer (floor: /review_ping of the same app, same run):", "",
             "| action | n | p50 ms | p95 ms | p95 - floor | target (floor + 40 ms) | "
             "p95 with new pictures fetched |", "|---|---:|---:|---:|---:|---|---:|"]
    for a in SOLO_ORDER:
        ms = solo.timings.ms.get(a, [])
        if not ms:
            continue
        over = pct(ms, 95) - floor
        ok = "floor" if a == "ping" else ("met" if over <= TARGET_OVER_FLOOR_MS else "missed")
        pics = pct(solo.timings.ms.get(f"{a} + pictures", []), 95)
        lines.append(f"| {a} | {len(ms)} | {pct(ms, 50):.0f} | {pct(ms, 95):.0f} | "
                     f"{over:+.0f} | {ok} | {pics:.0f} |")
    lines += ["", f"Errors: {len(solo.timings.errors)}. " + cpu_line(solo), ""]
    every = crowded.timings.all()
    verdict = ("met" if every and pct(every, 95) <= TARGET_CROWD_P95_MS
               and not crowded.timings.errors else "missed")
    lines += [f"{cfg.reviewers} reviewers, think {cfg.think_s[0]:.0f}-{cfg.think_s[1]:.0f} s, "
              f"{cfg.seconds:.0f} s ({res['tasks']} tasks seeded):", "",
              "| action | n | p50 ms | p95 ms | max ms |", "|---|---:|---:|---:|---:|"]
    for a in ("next", "note", "anchors", "undo", "approve"):
        ms = crowded.timings.ms.get(a, [])
        if ms:
            lines.append(f"| {a} | {len(ms)} | {pct(ms, 50):.0f} | {pct(ms, 95):.0f} | "
                         f"{max(ms):.0f} |")
    lines.append(f"| **all actions** | {len(every)} | {pct(every, 50):.0f} | "
                 f"{pct(every, 95):.0f} | {max(every, default=float('nan')):.0f} |")
    lines += ["", f"Target p95 <= {TARGET_CROWD_P95_MS:.0f} ms and 0 errors: {verdict} "
              f"({len(crowded.timings.errors)} errors"
              + (f"; first: {crowded.timings.errors[0]}" if crowded.timings.errors else "")
              + "). " + cpu_line(crowded),
              f"Seeding {res['seed_s']:.0f} s, {cfg.reviewers} logins {res['login_s']:.0f} s."]
    return lines


def cpu_line(p: Phase) -> str:
    return (f"Load generator (this process, all clients): {p.client_cpu_s:.1f} s CPU in "
            f"{p.wall_s:.0f} s ({p.client_cpu_s / p.wall_s:.2f} cores); server "
            f"{p.server_cpu_s:.1f} s ({p.server_cpu_s / p.wall_s:.2f} cores).")


def _paths() -> None:
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    for p in (str(REPO), str(REPO / "tests")):
        if p not in sys.path:
            sys.path.insert(0, p)


def quick_config() -> Config:
    return Config(reviewers=6, seconds=12.0, think_s=(1.0, 2.0), repeat=3, correction_every=3)


def run(quick: bool = False) -> object:
    """The section for ``python -m bench`` (quick: 6 reviewers, 12 s, think 1-2 s)."""
    from bench.common import Row, Section

    _paths()
    cfg = quick_config() if quick else Config()
    res = measure(cfg)
    solo, crowded = res["solo"], res["crowd"]
    floor = pct(solo.timings.ms.get("ping", []), 95)
    rows = [Row(f"review: {a} p95, 1 reviewer (3024x2268 photo)",
                pct(solo.timings.ms[a], 95), floor, "ms", baseline_name="the floor "
                "(/review_ping, same app, same run)", notes=f"target floor + "
                f"{TARGET_OVER_FLOOR_MS:.0f} ms")
            for a in SOLO_ORDER[1:] if solo.timings.ms.get(a)]
    every = crowded.timings.all()
    rows.append(Row(f"review: all actions p95, {cfg.reviewers} reviewers (think "
                    f"{cfg.think_s[0]:.0f}-{cfg.think_s[1]:.0f} s)", pct(every, 95),
                    pct(solo.timings.all(), 95), "ms", baseline_name="1 reviewer, same run",
                    notes=f"target <= {TARGET_CROWD_P95_MS:.0f} ms; "
                          f"{len(crowded.timings.errors)} errors"))
    command = "python -m bench.bench_review" + (" --quick" if quick else "")
    detail = "\n".join(tables(res, cfg))
    error = "" if not (solo.timings.errors or crowded.timings.errors) else \
        f"{len(solo.timings.errors) + len(crowded.timings.errors)} failed review calls"
    return Section("review", "Review actions through the app (3024x2268 photos)", command,
                   rows, detail, error=error)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reviewers", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    _paths()
    cfg = quick_config() if args.quick else Config(args.reviewers, args.seconds,
                                                   repeat=args.repeat)
    print(f"load average before {os.getloadavg()}", flush=True)
    res = measure(cfg)
    print("\n".join(tables(res, cfg)))
    print(f"load average after {os.getloadavg()}")
    return 0 if not (res["solo"].timings.errors or res["crowd"].timings.errors) else 1


if __name__ == "__main__":
    raise SystemExit(main())
