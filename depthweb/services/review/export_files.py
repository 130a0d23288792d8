"""The files of an export on disk: putting a finished export in place, the one-export-per-target
lock, leftovers of killed runs, and reading a complete export's ``export.json``.

An export is built in a hidden sibling ``.<name>.tmp-<id>`` of its target and renamed into
place; a previous export is swapped out in one step (:func:`depthweb.fsutil.replace_dir`), so
the target is always absent or a complete export. A run killed on the way leaves only hidden
siblings (``.<name>.tmp-*``, ``.<name>.old-*``, ``.<name>.del-*``), which the next export to the
same target removes while it holds the lock.
"""

from __future__ import annotations

import fcntl
import glob
import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from depthweb.errors import InputError
from depthweb.fsutil import replace_dir


def check_target(target: Path, overwrite: bool) -> None:
    """Refuse a target that is a file, or a non-empty folder without ``overwrite``."""
    if target.exists():
        if not target.is_dir():
            raise InputError(f"{target} exists and is not a folder; choose another output.")
        if not overwrite and any(target.iterdir()):
            raise InputError(f"{target} already holds files; choose a new folder or "
                             "pass --overwrite.")


def place(tmp: Path, target: Path, overwrite: bool) -> None:
    """Rename the finished ``tmp`` to ``target``: an empty target is replaced; a non-empty one
    only with ``overwrite``, swapped out in one step (:func:`depthweb.fsutil.replace_dir`)."""
    check_target(target, overwrite)
    if target.is_dir() and not any(target.iterdir()):
        target.rmdir()
    replace_dir(tmp, target)


def leftovers(target: Path) -> list[Path]:
    """Hidden siblings that runs killed mid-export left: ``.<name>.tmp-*``, ``.<name>.old-*``
    and ``.<name>.del-*`` folders."""
    parent = target.parent
    if not parent.is_dir():
        return []
    return sorted(p for kind in ("tmp", "old", "del")
                  for p in parent.glob(f".{glob.escape(target.name)}.{kind}-*"))


@contextmanager
def export_lock(target: Path) -> Iterator[None]:
    """Hold the per-target lock file ``.<name>.lock`` (beside the target, deleted when the
    export ends) for one export; refuse when another export to the same folder is running.
    The kernel releases the lock when a process dies; a dead run's lock file is reused."""
    target.parent.mkdir(parents=True, exist_ok=True)
    lock_path = target.with_name(f".{target.name}.lock")
    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if os.fstat(fd).st_ino == os.stat(lock_path).st_ino:
                break  # still the file at lock_path (not one a finishing run just deleted)
        except BlockingIOError as exc:
            os.close(fd)
            raise InputError(f"Another export to {target} is running; wait for it to "
                             "finish.") from exc
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        yield
    finally:
        lock_path.unlink(missing_ok=True)
        os.close(fd)


def read_export_meta(path: Path) -> dict | None:
    """``export.json`` of a complete export at ``path`` (its manifest's sha256 matches), or
    None."""
    try:
        meta = json.loads((path / "export.json").read_text())
        manifest = (path / "manifest.jsonl").read_bytes()
    except (OSError, ValueError):
        return None
    ok = isinstance(meta, dict) and meta.get("manifest_sha256") == hashlib.sha256(
        manifest).hexdigest()
    return meta if ok else None
