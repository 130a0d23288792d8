"""Filesystem helpers shared by every layer (stdlib only)."""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import tempfile
import uuid
from collections.abc import Mapping
from pathlib import Path

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
_NO_EXCHANGE = {errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV}


NAME_MAX = 255
"""Longest file name (bytes) the usual file systems (ext4, XFS, APFS, NTFS) accept."""


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (:func:`atomic_write_files` with one file).

    Readers see either the old file or the whole new one, never a partial write; a failure
    leaves no temporary file behind.
    """
    path = Path(path)
    atomic_write_files({path: data})
    return path


def atomic_write_files(files: Mapping[Path, bytes]) -> None:
    """Write a set of files so that a failure changes none of them.

    Names are checked first (an over-long name raises ``OSError(ENAMETOOLONG)`` before anything
    is written); each file goes to a short hidden temporary sibling (fsync), and only when all
    of them are written are they renamed into place, then their folders are fsynced. Temporary
    files never outlive a failure.
    """
    for path in files:
        if len(os.fsencode(Path(path).name)) > NAME_MAX:
            raise OSError(errno.ENAMETOOLONG, "File name too long", str(path))
    temps: list[tuple[str, Path]] = []
    try:
        for path, data in files.items():
            path = Path(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".dw-", suffix=".tmp", dir=path.parent)
            temps.append((tmp, path))
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        for i, (tmp, path) in enumerate(temps):
            os.replace(tmp, path)
            temps[i] = ("", path)  # renamed: nothing left to clean up
    finally:
        for tmp, _ in temps:
            if tmp:
                Path(tmp).unlink(missing_ok=True)
    for folder in {p.parent for _, p in temps}:
        fsync_dir(folder)


def fsync_dir(directory: str | os.PathLike) -> None:
    """Flush a directory's entries (renames, new files) to disk."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(folder: str | os.PathLike) -> None:
    """Flush every file under ``folder`` and every folder's entries to disk (before a finished
    folder is renamed into place, so the rename never exposes files still only in cache)."""
    folder = Path(folder)
    for p in sorted(folder.rglob("*"), key=lambda q: len(q.parts), reverse=True):
        if p.is_file() and not p.is_symlink():
            with p.open("rb") as fh:
                os.fsync(fh.fileno())
        elif p.is_dir():
            fsync_dir(p)
    fsync_dir(folder)


def exchange_paths(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Swap two existing paths in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``).

    Returns False, changing nothing, where the platform or file system cannot do it; raises
    ``OSError`` for any other failure.
    """
    func = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if func is None:
        return False
    func.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if func(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in _NO_EXCHANGE:
        return False
    raise OSError(err, os.strerror(err), str(a), None, str(b))


def replace_dir(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Put the finished folder ``src`` at ``dst`` (replacing a folder already there).

    Readers of ``dst`` see the old folder or the new one, never a mix or nothing: the two are
    swapped atomically where the platform allows (:func:`exchange_paths`); elsewhere the old
    one is first renamed to a hidden ``.<name>.old-<id>`` sibling (a crash in between leaves
    ``dst`` missing and the old folder there). The old folder is deleted afterwards.
    """
    src, dst = Path(src), Path(dst)
    if not dst.exists():
        os.rename(src, dst)
    elif exchange_paths(src, dst):
        shutil.rmtree(src, ignore_errors=True)  # src now holds the old folder
    else:
        old = dst.with_name(f".{dst.name}.old-{uuid.uuid4().hex[:8]}")
        os.rename(dst, old)
        os.rename(src, dst)
        shutil.rmtree(old, ignore_errors=True)
    fsync_dir(dst.parent)


def remove_dir(path: str | os.PathLike) -> None:
    """Delete a folder so that no reader ever sees it half deleted: it is first renamed to a
    hidden ``.<name>.del-<id>`` sibling, then removed."""
    path = Path(path)
    if not path.exists():
        return
    doomed = path.with_name(f".{path.name}.del-{uuid.uuid4().hex[:8]}")
    os.rename(path, doomed)
    shutil.rmtree(doomed, ignore_errors=True)


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists (one of another user counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
