"""The load workload: logged-in ``gradio_client`` clients (one reviewer account each) looping a
seeded random mix of Studio predictions and review actions for a bounded time, and a burst
phase that overfills the app's queue.

Request kinds (see ``tests/review_ui/test_endpoints.py`` for the endpoints' arguments):
``predict`` (``/predict`` on a real 638x235 photo), ``next`` (``/review_next``: claim a task of
the ``load`` dataset), ``open`` (``/review_open`` the claimed task, one of a few "hot" tasks or
any task), ``note`` (``/review_note`` on the task last seen: tasks are shared, so this races),
``anchors`` (``/review_save_anchors`` on the claimed task) and ``approve``
(``/review_approve`` of the claimed task, which claims the next one).

Every answer is classified: ``ok``; ``stale`` (a save refused with the clear "Not saved: task N
changed meanwhile" status, a correct answer under concurrency); ``refused`` (one of the
review rules' clear sentences, :data:`REFUSALS`: a note on a task another reviewer holds, anchors
the label cannot be fitted to); ``empty`` (nothing left to claim); ``queue_full`` (Gradio's
"Queue is full" refusal); ``failed`` (anything else: an error, a timeout, an unexpected answer).
Latencies are kept per kind for ``ok``, ``stale``, ``refused`` and ``empty`` answers (queue
refusals and failures are counted, not timed).
Clients count their successful saves and fresh claims per task, for the database checks.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tests.load.seeding import DATASET
from tests.review_ui.server import TEACHER

KINDS = ("predict", "next", "open", "note", "anchors", "approve")
MIX = {"predict": 0.2, "next": 0.1, "open": 0.2, "note": 0.15, "anchors": 0.15,
       "approve": 0.2}
HOT = 2  # notes race on these tasks (every client opens them often)
OUTCOMES = ("ok", "stale", "refused", "empty", "queue_full", "failed")
# Sentences of correct refusals (the review rules), as gradio_client's AppError carries them.
REFUSALS = ("was claimed by another reviewer", "These anchors would put",
            "cannot fix both the scale and the shift")
# Output positions of the review endpoints (State outputs are dropped by gradio_client).
TASK, VERSION, STATUS = 0, 1, 13
ANCHOR_HEADERS = ["x (px)", "y (px)", "true depth (m)"]


class UnexpectedAnswer(Exception):
    """An answer that is neither a success nor a clear refusal."""


@dataclass
class Tally:
    """What clients saw: latencies (s) per kind, outcome counts, failures, saves and claims."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    outcomes: Counter = field(default_factory=Counter)  # (kind, outcome) -> count
    failures: list[str] = field(default_factory=list)
    saves: Counter = field(default_factory=Counter)  # task id -> successful saves
    claims: Counter = field(default_factory=Counter)  # task id -> fresh claims
    approvals: Counter = field(default_factory=Counter)  # task id -> successful approvals
    wall_s: float = 0.0

    def merge(self, other: Tally) -> None:
        for kind, values in other.latencies.items():
            self.latencies[kind].extend(values)
        self.outcomes.update(other.outcomes)
        self.failures.extend(other.failures)
        self.saves.update(other.saves)
        self.claims.update(other.claims)
        self.approvals.update(other.approvals)

    def count(self, outcome: str) -> int:
        return sum(n for (_, o), n in self.outcomes.items() if o == outcome)

    def summary(self) -> dict:
        """Per kind: requests, outcome counts, p50 / p95 / max latency in ms."""
        kinds = {}
        for kind in KINDS:
            lat = np.asarray(self.latencies.get(kind, []), float) * 1000.0
            counts = {o: int(self.outcomes[(kind, o)]) for o in OUTCOMES}
            kinds[kind] = {"requests": sum(counts.values()), **counts,
                           "p50_ms": _pct(lat, 50), "p95_ms": _pct(lat, 95),
                           "max_ms": float(lat.max()) if lat.size else None}
        total = sum(self.outcomes.values())
        return {"kinds": kinds, "requests": total, "wall_s": round(self.wall_s, 2),
                "throughput_rps": round(total / self.wall_s, 2) if self.wall_s else None,
                **{o: self.count(o) for o in OUTCOMES},
                "failures": self.failures[:20]}


def _pct(values: np.ndarray, q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if values.size else None


STUDIO_APIS = frozenset({"/predict", "/compare", "/stereo"})


class Connection:
    """One user's clients: the review platform (logged in) and the public Studio, which has
    ``/predict`` since the two apps are mounted apart (``depthweb.server``)."""

    def __init__(self, review, studio) -> None:
        self.review, self.studio = review, studio

    def submit(self, *args, api_name: str):
        client = self.studio if api_name in STUDIO_APIS else self.review
        return client.submit(*args, api_name=api_name)

    def close(self) -> None:
        self.review.close()
        self.studio.close()


def connect(url: str, users: Sequence[str], password: str, workers: int = 8,
            timeout_s: float = 120.0, studio_url: str | None = None) -> list[Connection]:
    """One :class:`Connection` per user, its review client logged in to ``url`` (made in
    parallel; no downloads; ``timeout_s`` for each HTTP request, login included, instead of
    httpx's 5 s); the Studio at ``studio_url`` (default: the server's root).

    Each anonymous Studio client names its own address in ``X-Forwarded-For`` (see
    :func:`client_address_of`): 50 visitors come from 50 addresses, not all from loopback, so
    the per-address queue cap (``DEPTHWEB_QUEUE_PER_USER``) applies to each of them alone. The
    server must trust loopback as a proxy (``DEPTHWEB_TRUSTED_PROXIES``) for this to count."""
    from gradio_client import Client

    root = studio_url or url.removesuffix("/").removesuffix("review")

    def make(index_name: tuple[int, str]) -> Connection:
        index, name = index_name
        options = {"verbose": False, "download_files": False, "analytics_enabled": False,
                   "httpx_kwargs": {"timeout": timeout_s}}
        return Connection(Client(url, auth=(name, password), **options),
                          Client(root, headers={"X-Forwarded-For": client_address_of(index)},
                                 **options))

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(make, enumerate(users)))


def client_address_of(index: int) -> str:
    """The address the ``index``-th load client claims (TEST-NET-2, 198.51.100.0/24, and on)."""
    return f"198.51.{100 + index // 250}.{1 + index % 250}"


def close_all(clients: Sequence) -> None:
    """Stop the clients' heartbeat threads (in parallel: each close waits up to 1 s)."""
    if clients:
        with ThreadPoolExecutor(min(len(clients), 16)) as pool:
            list(pool.map(lambda c: c.close(), clients))


class Worker:
    """One simulated user: a client, its own RNG, the task it holds and the versions it saw."""

    def __init__(self, client, rng: np.random.Generator, task_ids: Sequence[int],
                 photo: Path, timeout_s: float,
                 anchors: dict[int, list[list[float]]] | None = None) -> None:
        from gradio_client import handle_file

        self.client, self.rng, self.task_ids = client, rng, list(task_ids)
        self.anchors = anchors or {}
        self.photo, self.timeout_s = handle_file(str(photo)), timeout_s
        self.held: int | None = None
        self.page: int | None = None
        self.known: dict[int, int] = {}
        self.tally = Tally()

    def call(self, api: str, *args):
        return self.client.submit(*args, api_name=api).result(timeout=self.timeout_s)

    def step(self, kind: str) -> None:
        """One request of ``kind`` (``anchors`` / ``approve`` claim first when nothing is held);
        its latency and outcome go to the tally."""
        from gradio_client.exceptions import AppError
        from gradio_client.utils import QueueError

        if kind in ("anchors", "approve") and self.held is None:
            kind = "next"
        start = time.perf_counter()
        try:
            outcome = getattr(self, f"_{kind}")()
        except QueueError:
            outcome = "queue_full"
        except AppError as exc:
            outcome = "refused" if any(r in str(exc) for r in REFUSALS) else "failed"
            if outcome == "failed":
                self.tally.failures.append(f"{kind}: {type(exc).__name__}: {exc}")
        except (UnexpectedAnswer, TimeoutError) as exc:
            outcome = "failed"
            self.tally.failures.append(f"{kind}: {type(exc).__name__}: {exc}")
        except Exception as exc:  # any other client-side error is a failed request too
            outcome = "failed"
            self.tally.failures.append(f"{kind}: {type(exc).__name__}: {exc!r}")
        elapsed = time.perf_counter() - start
        self.tally.outcomes[(kind, outcome)] += 1
        if outcome in ("ok", "stale", "refused", "empty"):
            self.tally.latencies[kind].append(elapsed)

    # ----------------------------------------------------------------- request kinds
    def _predict(self) -> str:
        out = self.call("/predict", self.photo, TEACHER, 0, 0, 0, "")
        info = out[5] if len(out) == 6 else None
        if not isinstance(info, dict) or info.get("kind") != "relative_disparity" or not out[0]:
            raise UnexpectedAnswer(f"/predict answered {str(out)[:200]}")
        return "ok"

    def _claimed(self, out) -> None:
        """The page of a freshly claimed task (or none left)."""
        task = out[TASK]
        if task:
            self.tally.claims[int(task)] += 1
            self.held = self.page = int(task)
            self.known[self.held] = int(out[VERSION])
        else:
            self.held = None

    def _next(self) -> str:
        out = self.call("/review_next", DATASET)
        if not out[TASK]:
            if "queue is empty" not in str(out[STATUS]):
                raise UnexpectedAnswer(f"/review_next answered {out[STATUS]!r}")
            self.held = None
            return "empty"
        if int(out[TASK]) != self.held:
            self._claimed(out)
        self.known[int(out[TASK])] = int(out[VERSION])
        return "ok"

    def _open(self) -> str:
        """The held task (30 %), one of the :data:`HOT` first tasks (50 %) or any task."""
        r = self.rng.random()
        if self.held and r < 0.3:
            task = self.held
        else:
            pool = self.task_ids[:HOT] if r < 0.8 else self.task_ids
            task = int(self.rng.choice(pool))
        out = self.call("/review_open", task)
        if out[TASK] != task:
            raise UnexpectedAnswer(f"/review_open {task} answered task {out[TASK]}")
        self.page, self.known[task] = task, int(out[VERSION])
        return "ok"

    def _note(self) -> str:
        task = self.page or self.held or int(self.rng.choice(self.task_ids))
        text = f"load note {int(self.rng.integers(1_000_000))}"
        return self._save("/review_note", task, text)

    def _anchors(self) -> str:
        """Two anchors (one cannot fix a disparity label's shift) where the teacher's values
        differ (:func:`tests.load.seeding.anchor_rows`), scaled by a random factor."""
        rows = self.anchors.get(self.held) or [[4, 4, 2.0], [60, 40, 3.0]]
        scale = float(self.rng.uniform(0.5, 4.0))
        table = {"headers": ANCHOR_HEADERS,
                 "data": [[x, y, round(z * scale, 4)] for x, y, z in rows]}
        return self._save("/review_save_anchors", self.held, table)

    def _approve(self) -> str:
        return self._save("/review_approve", self.held, "", after_next=True)

    def _save(self, api: str, task: int, arg, *, after_next: bool = False) -> str:
        """A save at the version this client last saw; stale refusals reload the task."""
        version = self.known.get(task, 0)
        out = self.call(api, task, version, arg)
        status = str(out[STATUS])
        if status.startswith(f"Not saved: task {task} changed meanwhile"):
            if out[TASK] != task or int(out[VERSION]) <= version:
                raise UnexpectedAnswer(f"{api}: stale answer without a newer version: {status}")
            self.known[task] = int(out[VERSION])
            return "stale"
        if not status.startswith("Saved:"):
            raise UnexpectedAnswer(f"{api} on task {task} v{version} answered {status!r}")
        self.tally.saves[task] += 1
        if after_next:
            self.tally.approvals[task] += 1
            self.held = None
            self._claimed(out)
        else:
            self.known[task] = int(out[VERSION])
        return "ok"


def choose_kind(rng: np.random.Generator, mix: dict[str, float], last: str | None) -> str:
    """The next request kind: after an ``open``, a ``note`` half the time (people comment on
    what they just looked at, which is where concurrent saves race), else drawn from ``mix``."""
    if last == "open" and rng.random() < 0.5:
        return "note"
    names = list(mix)
    weights = np.asarray([mix[n] for n in names], float)
    return names[int(rng.choice(len(names), p=weights / weights.sum()))]


def make_workers(clients: Sequence, task_ids: Sequence[int], photo: Path, *, seed: int = 0,
                 timeout_s: float = 240.0,
                 anchors: dict[int, list[list[float]]] | None = None) -> list[Worker]:
    """One :class:`Worker` per client, each with its own seeded RNG. Keep them for the whole
    run: a worker remembers the task its account holds on the server."""
    return [Worker(c, np.random.default_rng([seed, i]), task_ids, photo, timeout_s, anchors)
            for i, c in enumerate(clients)]


def run_mix(workers: Sequence[Worker], *, duration_s: float,
            mix: dict[str, float] | None = None) -> Tally:
    """Every worker loops random requests until ``duration_s`` is up (the request in flight
    then finishes); returns this phase's tally (the workers' tallies merged)."""
    mix = mix or MIX
    for w in workers:
        w.tally = Tally()
    timeout_s = max(w.timeout_s for w in workers)
    start = time.monotonic()
    stop_at = start + duration_s

    def loop(worker: Worker) -> None:
        last = None
        while time.monotonic() < stop_at:
            last = choose_kind(worker.rng, mix, last)
            worker.step(last)

    threads = [threading.Thread(target=loop, args=(w,), daemon=True) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(duration_s + timeout_s + 30)
    total = Tally(wall_s=time.monotonic() - start)
    for w in workers:
        total.merge(w.tally)
    if any(t.is_alive() for t in threads):
        total.failures.append("a client thread was still running after its time was up")
        total.outcomes[("open", "failed")] += 1
    return total


def burst(clients: Sequence, task_ids: Sequence[int], *, per_client: int,
          timeout_s: float = 120.0) -> Tally:
    """Every client submits ``per_client`` ``/review_open`` requests at once (read-only), to
    overfill the queue; each answer is ``ok``, ``queue_full`` or ``failed`` (latencies of the
    served ones under ``open``)."""
    start = time.monotonic()
    tally = Tally()
    jobs, times = [], []
    for k in range(per_client):
        for i, client in enumerate(clients):
            task = task_ids[(i + k) % len(task_ids)]
            times.append([time.perf_counter(), None])
            job = client.submit(task, api_name="/review_open")
            job.add_done_callback(lambda _f, t=times[-1]: t.__setitem__(1, time.perf_counter()))
            jobs.append((job, task))
    for (job, task), t in zip(jobs, times, strict=True):
        outcome = _burst_outcome(job, task, timeout_s, tally.failures)
        tally.outcomes[("open", outcome)] += 1
        if outcome == "ok":
            tally.latencies["open"].append((t[1] or time.perf_counter()) - t[0])
    tally.wall_s = time.monotonic() - start
    return tally


def _burst_outcome(job, task: int, timeout_s: float, failures: list[str]) -> str:
    from gradio_client.utils import QueueError

    try:
        out = job.result(timeout=timeout_s)
    except QueueError:
        return "queue_full"
    except Exception as exc:  # every other answer is a failure
        failures.append(f"burst open {task}: {type(exc).__name__}: {exc}")
        return "failed"
    if out[TASK] != task:
        failures.append(f"burst open {task} answered task {out[TASK]}")
        return "failed"
    return "ok"
