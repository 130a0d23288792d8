"""Review saves per second at the store level, SQLite with ``synchronous=FULL`` and PostgreSQL.

A save is what one review action writes: a write transaction (BEGIN IMMEDIATE on SQLite) in
which the repository loads the user, checks role, claim and version once, bumps the task version
(guarded UPDATE) and appends a revision (here a note: the smallest action; a correction adds one
more row insert for its label blobs, written before the transaction). ``--writers`` threads save
back to back, each on its own task, for ``--seconds``; the baseline in the same run is one
writer alone. Reported: saves/s, p50 / p95 latency per save, errors.

Each save loads its user in the write session, as the review service does. With
``--held-user`` a writer loads its user once and passes the object to every save (the store
checks the stored role and active flag inside each save's transaction either way).

    python -m bench.bench_review_store                      # SQLite FULL and PostgreSQL
    python -m bench.bench_review_store --writers 1 8 50 --seconds 10
    python -m bench.bench_review_store --held-user --no-postgres
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from argon2 import PasswordHasher
from sqlalchemy import event

from depthweb.store import SYSTEM, create_user, get_user, make_engine, session_scope, upgrade
from depthweb.store.repo import add_note, create_dataset, ensure_task, get_task


def _full(engine) -> None:
    """synchronous=FULL on every SQLite connection (the durability the hardening settles on)."""
    @event.listens_for(engine, "connect")
    def _pragma(dbapi_conn, _record) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA synchronous=FULL")
        cur.close()


def _seed(engine, n_users: int, tmp: Path) -> list[tuple[str, int]]:
    from depthweb.store import BlobStore
    from depthweb.store.repo import add_image, add_prediction
    from depthweb.types import DepthKind, Intrinsics

    store = BlobStore(tmp / "blobs")
    fast = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    out = []
    with session_scope(engine) as s:
        ds = create_dataset(session=s, user=SYSTEM, name="bench")
        for i in range(n_users):
            name = f"w{i:02d}"
            create_user(session=s, actor=SYSTEM, name=name, password="pw-123456789",
                        role="reviewer", hasher=fast)
            photo = store.put_bytes(np.random.default_rng(i).bytes(64), ".png")
            image, _ = add_image(session=s, user=SYSTEM, dataset_id=ds.id, blob=photo,
                                 store=store, width=8, height=6)
            depth = store.put_array(np.ones((6, 8), np.float32))
            pred, _ = add_prediction(session=s, user=SYSTEM, image_id=image.id, model="t",
                                     weights="", kind=DepthKind.RELATIVE_DISPARITY,
                                     intrinsics=Intrinsics.from_fov(8, 6, 60.0), depth=depth,
                                     store=store)
            task, _ = ensure_task(session=s, user=SYSTEM, image_id=image.id,
                                  prediction_id=pred.id)
            out.append((name, task.id))
    return out


def _writer(engine, name: str, task_id: int, stop: float, lat: list, errors: list,
            held_user: bool = False) -> None:
    with session_scope(engine, readonly=True) as s:
        version = get_task(s, task_id).version
        held = get_user(s, name) if held_user else None
    while time.perf_counter() < stop:
        t0 = time.perf_counter()
        try:
            with session_scope(engine) as s:
                rev = add_note(session=s, task_id=task_id, user=held or get_user(s, name),
                               expected_version=version, text="bench")
                version = rev.task_version
        except Exception as exc:
            errors.append(type(exc).__name__)
            continue
        lat.append(time.perf_counter() - t0)


def measure(url: str, writers: int, seconds: float, tmp: Path, sqlite_full: bool,
            held_user: bool = False) -> dict:
    upgrade(url)
    engine = make_engine(url, pool_size=max(5, writers), max_overflow=10)
    if sqlite_full:
        _full(engine)
    try:
        pairs = _seed(engine, writers, tmp)
        lat: list[float] = []
        errors: list[str] = []
        stop = time.perf_counter() + seconds
        start = time.perf_counter()
        threads = [threading.Thread(target=_writer,
                                    args=(engine, n, t, stop, lat, errors, held_user))
                   for n, t in pairs]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        took = time.perf_counter() - start
    finally:
        engine.dispose()
    ms = np.array(lat) * 1000.0
    return {"writers": writers, "saves": len(lat), "saves_per_s": len(lat) / took,
            "p50_ms": float(np.percentile(ms, 50)) if len(ms) else None,
            "p95_ms": float(np.percentile(ms, 95)) if len(ms) else None,
            "errors": len(errors)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--writers", type=int, nargs="+", default=[1, 8, 50])
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--no-postgres", action="store_true")
    ap.add_argument("--held-user", action="store_true",
                    help="load each writer's user once instead of in every save")
    args = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-review-store-") as tmp:
        for w in args.writers:
            d = Path(tmp) / f"sqlite{w}"
            d.mkdir()
            rows.append(("sqlite FULL", measure(f"sqlite:///{d / 'db.sqlite'}", w,
                                                args.seconds, d, True, args.held_user)))
        if not args.no_postgres:
            from depthweb.store.pgserver import throwaway_postgres

            with throwaway_postgres(durable=True) as server:
                for w in args.writers:
                    d = Path(tmp) / f"pg{w}"
                    d.mkdir()
                    from sqlalchemy.engine import make_url

                    from depthweb.store.pgserver import create_database

                    url = make_url(server.url()).set(database=f"bench{w}")
                    create_database(server.url(), f"bench{w}")
                    rows.append(("postgresql", measure(url.render_as_string(
                        hide_password=False), w, args.seconds, d, False, args.held_user)))
    print("| backend | writers | saves/s | p50 ms | p95 ms | errors |")
    print("|---|---:|---:|---:|---:|---:|")
    for backend, r in rows:
        print(f"| {backend} | {r['writers']} | {r['saves_per_s']:.0f} | {r['p50_ms']:.1f} | "
              f"{r['p95_ms']:.1f} | {r['errors']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
