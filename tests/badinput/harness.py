"""Helpers shared by the bad-input surfaces: one-sentence checks, store snapshots, the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import func, select

from depthweb.imaging import display_name

REPO = Path(__file__).resolve().parents[2]
GENERIC = ("internal error", "Traceback", "Exception:", "[Errno")


def assert_sentence(message: object, needle: str, *, name: str | None = None) -> str:
    """``message`` is one clear sentence: one line, ends like a sentence, contains ``needle``
    (case-insensitive) and the file ``name`` when given, and is not a generic failure."""
    text = str(message).strip()
    assert text, "empty error message"
    assert "\n" not in text, f"not one line: {text!r}"
    assert text[-1] in ".!?)", f"not a sentence: {text!r}"
    assert needle.lower() in text.lower(), f"{needle!r} not in {text!r}"
    assert not any(g in text for g in GENERIC), f"generic error: {text!r}"
    assert len(text) < 600, f"too long for one sentence: {text[:200]!r}..."
    if name is not None:
        assert display_name(name) in text, f"{display_name(name)!r} not named in {text!r}"
    return text


def store_snapshot(ctx) -> dict:
    """Everything a request could change: every table's rows (as tuples), the blob files with
    their sizes, and the exports folder."""
    from depthweb.store.models import Base

    tables = {}
    with ctx.session(readonly=True) as s:
        for table in Base.metadata.sorted_tables:
            if table.name in ("login_attempts", "alembic_version"):
                continue
            rows = s.execute(select(table)).all()
            tables[table.name] = sorted(tuple(str(v) for v in r) for r in rows)
        tables["_count"] = {t.name: s.scalar(select(func.count()).select_from(t))
                            for t in Base.metadata.sorted_tables}
    root = Path(ctx.store.root)
    blobs = sorted((str(p.relative_to(root)), p.stat().st_size) for p in root.rglob("*")
                   if p.is_file())
    exports = Path(ctx.settings.data_dir) / "exports"
    listing = sorted(str(p.relative_to(exports)) for p in exports.rglob("*")) \
        if exports.exists() else []
    return {"tables": tables, "blobs": blobs, "exports": listing}


def cli_env(**extra: str) -> dict:
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "DEPTHWEB_DEVICE": "cpu", "OMP_NUM_THREADS": "2", "PYTHONIOENCODING": "utf-8"}
    env.update(extra)
    return env


def run_cli(args: list, env: dict, cwd: Path | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m depthweb ARGS`` as a real subprocess (bytes arguments allowed)."""
    return subprocess.run([sys.executable, "-m", "depthweb", *map(os.fsencode, map(str, args))],
                          env=env, cwd=cwd, capture_output=True, timeout=timeout)


def error_lines(stderr: bytes | str) -> list[str]:
    text = stderr.decode("utf-8", "replace") if isinstance(stderr, bytes) else stderr
    return [line for line in text.splitlines() if line.startswith("error:")]


def lines_naming(lines: list[str], name: str) -> list[str]:
    shown = display_name(name)
    return [line for line in lines if shown in line]


def no_temp_files(folder: Path) -> None:
    left = [p.name for p in Path(folder).rglob("*") if p.name.startswith(".")]
    assert not left, f"temporary files left in {folder}: {left}"
