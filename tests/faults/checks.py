"""What must hold after any crash: the database passes its integrity check, every row's foreign
keys resolve, revision chains are intact, every referenced blob file is on disk with its
sha256, orphan files are unreferenced and removed by gc, and exports on disk are complete and
match the newest ``exports`` row of their path.

Each ``*_problems`` function returns a list of sentences (empty = healthy), so a failing test
says everything that is wrong at once.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session

from depthweb.store import BlobRef, BlobStore, make_engine
from depthweb.store.blobs import TMP_MARK
from depthweb.store.engine import is_sqlite, session_scope, sqlite_integrity_check
from depthweb.store.models import Base, Blob, Export, Review, Revision, Task
from depthweb.store.repo import consensus

MANIFEST_FILES = {"manifest.jsonl", "manifest.parquet", "export.json"}


# ------------------------------------------------------------------------------ database
def integrity_problems(url: str) -> list[str]:
    """Open the database afresh (as a restarted process would) and check it: SQLite
    ``PRAGMA integrity_check`` and ``foreign_key_check``; PostgreSQL ``amcheck`` on every
    btree index (with the heap) and table; both: every foreign key resolves."""
    engine = make_engine(url)
    try:
        problems = _sqlite_checks(engine) if is_sqlite(engine) else _pg_checks(engine)
        return problems + _dangling_keys(engine)
    finally:
        engine.dispose()


def _sqlite_checks(engine: Engine) -> list[str]:
    problems = []
    result = sqlite_integrity_check(engine)
    if result != "ok":
        problems.append(f"PRAGMA integrity_check: {result}")
    with engine.connect() as conn:
        bad = conn.execute(text("PRAGMA foreign_key_check")).all()
    return problems + [f"foreign_key_check: {row}" for row in bad]


def _pg_checks(engine: Engine) -> list[str]:
    """``amcheck`` where the server has it (Debian's does); else only the key checks run."""
    problems = []
    with engine.begin() as conn:
        if conn.execute(text("SELECT count(*) FROM pg_available_extensions"
                             " WHERE name = 'amcheck'")).scalar() == 0:
            return []
        conn.execute(text("CREATE EXTENSION IF NOT EXISTS amcheck"))
        indexes = conn.execute(text(
            "SELECT c.oid::regclass::text FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
            " JOIN pg_am a ON a.oid = c.relam JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE a.amname = 'btree' AND n.nspname = 'public'")).scalars().all()
        for name in indexes:  # raises on a corrupt index
            conn.execute(text("SELECT bt_index_check(CAST(:n AS regclass), true)"), {"n": name})
        tables = conn.execute(text(
            "SELECT c.oid::regclass::text FROM pg_class c JOIN pg_namespace n"
            " ON n.oid = c.relnamespace WHERE c.relkind = 'r' AND n.nspname = 'public'"
        )).scalars().all()
        for name in tables:
            rows = conn.execute(text("SELECT * FROM verify_heapam(CAST(:n AS regclass))"),
                                {"n": name}).all()
            problems += [f"verify_heapam {name}: {r}" for r in rows]
    assert indexes and tables, "amcheck found nothing to check"
    return problems


def _dangling_keys(engine: Engine) -> list[str]:
    problems = []
    with engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            for fk in table.foreign_keys:
                child, target = fk.parent, fk.column.table.alias("target")
                parent = target.c[fk.column.name]
                n = conn.execute(
                    select(func.count()).select_from(table.outerjoin(target, child == parent))
                    .where(child.is_not(None), parent.is_(None))).scalar()
                if n:
                    problems.append(f"{n} row(s) of {table.name}.{child.name} point nowhere")
    return problems


def revision_problems(session: Session, *, contiguous: bool = False) -> list[str]:
    """Each task's revisions form one chain (first without parent, each the child of the one
    before, versions increasing, none past the task's version; ``contiguous``: exactly versions
    1..version, for worlds without claims); each review points at a revision of its task with
    its decision; each status agrees with the active reviews (tasks never adjudicated)."""
    problems = []
    chains: dict[int, list[Revision]] = defaultdict(list)
    for rev in session.scalars(select(Revision).order_by(Revision.task_id,
                                                         Revision.task_version)):
        chains[rev.task_id].append(rev)
    for task in session.scalars(select(Task)):
        revs = chains.get(task.id, [])
        parents = [r.parent_id for r in revs]
        if parents != [None, *(r.id for r in revs[:-1])][:len(revs)]:
            problems.append(f"task {task.id}: broken parent chain {parents}")
        versions = [r.task_version for r in revs]
        if versions != sorted(set(versions)) or (versions and versions[-1] > task.version):
            problems.append(f"task {task.id} v{task.version}: revision versions {versions}")
        if contiguous and versions != list(range(1, task.version + 1)):
            problems.append(f"task {task.id} v{task.version}: versions {versions} have gaps")
        problems += _status_problems(session, task, revs)
    for review in session.scalars(select(Review)):
        rev = session.get(Revision, review.revision_id)
        if rev is None or rev.task_id != review.task_id or rev.action != review.decision:
            problems.append(f"review {review.id} does not match its revision")
    return problems


def _status_problems(session: Session, task: Task, revs: list[Revision]) -> list[str]:
    if task.is_gold or any(r.action == "adjudicate" for r in revs):
        return []
    active = session.scalars(select(Review.decision).where(
        Review.task_id == task.id, Review.active)).all()
    if len(active) < task.required_reviews:
        ok = task.status in ("new", "in_review")
    else:
        ok = task.status == consensus(list(active), task.required_reviews)
    return [] if ok else [f"task {task.id} is {task.status} with active reviews {active}"]


# ------------------------------------------------------------------------------ blobs
def blob_problems(session: Session, store: BlobStore) -> list[str]:
    """Every ``blobs`` row: a final (not temporary) name, its file on disk with that sha256 and
    size, arrays loadable with the stored shape and dtype."""
    problems = []
    for blob in session.scalars(select(Blob)):
        path = store.root / blob.path
        if TMP_MARK in blob.path or not path.is_file():
            problems.append(f"blob {blob.sha256[:12]}: no final file {blob.path}")
            continue
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != blob.sha256 or len(data) != blob.nbytes:
            problems.append(f"blob {blob.sha256[:12]}: the file does not match its row")
        elif blob.shape is not None:
            store.get_array(BlobRef.from_row(blob), verify=True)
    return problems


def collect_orphans(url: str, store: BlobStore) -> list[Path]:
    """Orphan files (no row, or temporary): none is referenced, gc removes exactly them, and
    none is left after. Returns what gc removed."""
    engine = make_engine(url)
    try:
        with session_scope(engine, readonly=True) as s:
            orphans = store.orphans(s)
            known = set(s.scalars(select(Blob.path)))
            assert not {p.relative_to(store.root).as_posix() for p in orphans} & known
            removed = store.gc(s, min_age_s=0)
            assert removed == orphans and store.orphans(s) == []
    finally:
        engine.dispose()
    return removed


# ------------------------------------------------------------------------------ exports
def export_problems(path: Path) -> list[str]:
    """An export folder: ``export.json`` names the sha256 of ``manifest.jsonl``, every file the
    manifest names is there (labels load as float32), and nothing else is."""
    try:
        meta = json.loads((path / "export.json").read_text())
        manifest = (path / "manifest.jsonl").read_bytes()
    except (OSError, ValueError) as exc:
        return [f"{path}: not a complete export ({exc})"]
    problems = []
    if meta.get("manifest_sha256") != hashlib.sha256(manifest).hexdigest():
        problems.append(f"{path}: export.json does not match manifest.jsonl")
    rows = [json.loads(line) for line in manifest.decode().splitlines()]
    if meta.get("count") != len(rows):
        problems.append(f"{path}: count {meta.get('count')} != {len(rows)} rows")
    named = {r[k] for r in rows for k in ("image", "label", "mask") if r.get(k)}
    present = {p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()}
    if present != named | MANIFEST_FILES:
        problems.append(f"{path}: files {sorted(present ^ (named | MANIFEST_FILES))[:5]} "
                        "are missing or not in the manifest")
    for r in rows:
        if (path / r["label"]).is_file() and np.load(path / r["label"]).dtype != np.float32:
            problems.append(f"{path}: {r['label']} is not float32")
    return problems


def export_rows_problems(session: Session) -> list[str]:
    """The newest ``exports`` row of each path describes the complete export there (older rows
    of a path were replaced by ``--overwrite``)."""
    problems = []
    newest: dict[str, Export] = {}
    for row in session.scalars(select(Export).order_by(Export.id)):
        newest[row.path] = row
    for path, row in newest.items():
        found = export_problems(Path(path))
        if found:
            problems += found
            continue
        meta = json.loads((Path(path) / "export.json").read_text())
        if (meta["manifest_sha256"], meta["count"]) != (row.manifest_sha256, row.n_items):
            problems.append(f"export row {row.id} does not describe the export at {path}")
    return problems


def hidden_siblings(target: Path) -> list[str]:
    """Hidden leftovers next to an export target (temporary, old or lock files)."""
    parent = target.parent
    return sorted(p.name for p in parent.glob(f".{target.name}.*")) if parent.is_dir() else []
