"""Content-addressed blob store: arrays (``.npy``) and raw bytes under one root directory.

A blob's name is the sha256 of its file bytes; it lives at ``ab/cd/<sha256><suffix>`` below the
root. Files are written atomically (temp file, fsync, ``os.replace``, fsync of the directory)
*before* the database row that points to them is committed, so a crash leaves at worst an
orphan file (found by :meth:`BlobStore.orphans`, removed by :meth:`BlobStore.gc`), never a row
without its file. Keep the root outside every folder a web server serves.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from depthweb.errors import InputError
from depthweb.store.models import Blob
from depthweb.store.sqlutil import insert_ignore

logger = logging.getLogger(__name__)

TMP_MARK = ".tmp-"
_SUFFIX_RE = re.compile(r"^(\.[A-Za-z0-9]{1,10})?$")


@dataclass(frozen=True)
class BlobRef:
    """Where a blob is and what it holds; ``shape``/``dtype`` are None for raw bytes."""

    sha256: str
    path: str  # POSIX path relative to the blob root
    nbytes: int
    shape: tuple[int, ...] | None = None
    dtype: str | None = None

    @classmethod
    def from_row(cls, blob: Blob) -> BlobRef:
        shape = tuple(int(s) for s in blob.shape) if blob.shape is not None else None
        return cls(blob.sha256, blob.path, int(blob.nbytes), shape, blob.dtype)


class BlobStore:
    """Blobs under ``root``; :meth:`register` adds the database row for a written blob."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    # ----------------------------------------------------------------------------- writing
    def put_array(self, array: np.ndarray) -> BlobRef:
        """Store ``array`` (any shape, numeric or bool dtype) as ``.npy``; returns its ref."""
        arr = np.ascontiguousarray(array)
        if arr.dtype.hasobject:
            raise InputError("Object arrays cannot be stored; convert to a numeric dtype first.")
        buf = io.BytesIO()
        np.save(buf, arr, allow_pickle=False)
        data = buf.getvalue()
        sha = hashlib.sha256(data).hexdigest()
        rel = self._relpath(sha, ".npy")
        self._write(rel, data)
        return BlobRef(sha, rel, len(data), tuple(int(s) for s in arr.shape), str(arr.dtype))

    def put_bytes(self, data: bytes, suffix: str = ".bin") -> BlobRef:
        """Store raw bytes (e.g. an uploaded image file, suffix ``.jpg``)."""
        if not _SUFFIX_RE.match(suffix):
            raise InputError(f"Blob suffix {suffix!r} is not allowed; use e.g. '.png'.")
        sha = hashlib.sha256(data).hexdigest()
        rel = self._relpath(sha, suffix.lower())
        self._write(rel, bytes(data))
        return BlobRef(sha, rel, len(data))

    @staticmethod
    def _relpath(sha: str, suffix: str) -> str:
        return f"{sha[:2]}/{sha[2:4]}/{sha}{suffix}"

    def _write(self, rel: str, data: bytes) -> None:
        target = self.root / rel
        if target.is_file() and target.stat().st_size == len(data):
            # content-addressed: same name, same bytes. It may be an orphan a killed writer left
            # (old enough for gc): make it young again so gc spares it until its row commits.
            try:
                os.utime(target)
                return
            except FileNotFoundError:
                pass  # gc removed it just now: write it again
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.parent / f"{TMP_MARK}{uuid.uuid4().hex}-{target.name}"
        try:
            with open(tmp, "xb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        _fsync_dir(target.parent)

    def register(self, session: Session, ref: BlobRef) -> None:
        """Add the row for a blob already written to disk (idempotent, race-safe)."""
        if not (self.root / ref.path).is_file():
            raise InputError(f"Blob {ref.sha256} is not on disk; write it before registering.")
        insert_ignore(
            session,
            Blob,
            {
                "sha256": ref.sha256,
                "path": ref.path,
                "shape": list(ref.shape) if ref.shape is not None else None,
                "dtype": ref.dtype,
                "nbytes": ref.nbytes,
            },
            ["sha256"],
        )

    # ----------------------------------------------------------------------------- reading
    def path(self, ref: BlobRef) -> Path:
        return self.root / ref.path

    def exists(self, ref: BlobRef | str) -> bool:
        """Whether the blob file is on disk (``ref`` may be a bare sha256)."""
        if isinstance(ref, BlobRef):
            return (self.root / ref.path).is_file()
        shard = self.root / ref[:2] / ref[2:4]
        return shard.is_dir() and any(shard.glob(f"{ref}*"))

    def get_bytes(self, ref: BlobRef, *, verify: bool = False) -> bytes:
        data = (self.root / ref.path).read_bytes()
        if verify and hashlib.sha256(data).hexdigest() != ref.sha256:
            raise InputError(f"Blob {ref.sha256} is corrupt on disk (hash mismatch).")
        return data

    def get_array(self, ref: BlobRef, *, verify: bool = False) -> np.ndarray:
        """Load an array blob; its shape and dtype are checked against ``ref``."""
        if ref.shape is None:
            raise InputError(f"Blob {ref.sha256} holds raw bytes, not an array.")
        data = self.get_bytes(ref, verify=verify)
        arr = np.load(io.BytesIO(data), allow_pickle=False)
        if tuple(arr.shape) != tuple(ref.shape) or (ref.dtype and str(arr.dtype) != ref.dtype):
            raise InputError(
                f"Blob {ref.sha256} holds {arr.dtype}{arr.shape}, expected {ref.dtype}{ref.shape}."
            )
        return arr

    # --------------------------------------------------------------------------- integrity
    def iter_files(self) -> Iterator[Path]:
        """Every file below the root (blobs and leftover temp files)."""
        if self.root.is_dir():
            yield from (p for p in self.root.rglob("*") if p.is_file())

    def orphans(self, session: Session, *, min_age_s: float = 0.0) -> list[Path]:
        """Files with no ``blobs`` row (and leftover temp files) older than ``min_age_s``."""
        known = {row for row in session.scalars(select(Blob.path))}
        cutoff = time.time() - min_age_s
        out = []
        for p in self.iter_files():
            rel = p.relative_to(self.root).as_posix()
            if (rel not in known or p.name.startswith(TMP_MARK)) and p.stat().st_mtime <= cutoff:
                out.append(p)
        return sorted(out)

    def missing(self, session: Session) -> list[str]:
        """sha256 of rows whose file is not on disk (should always be empty)."""
        rows = session.execute(select(Blob.sha256, Blob.path)).all()
        return sorted(sha for sha, path in rows if not (self.root / path).is_file())

    def gc(self, session: Session, *, min_age_s: float = 3600.0) -> list[Path]:
        """Delete orphan files older than ``min_age_s`` (younger ones may be about to get their
        row committed); returns the deleted paths."""
        removed = []
        cutoff = time.time() - min_age_s
        for p in self.orphans(session, min_age_s=min_age_s):
            try:
                if p.stat().st_mtime > cutoff:
                    continue  # a writer reused this file since it was listed
                p.unlink()
            except FileNotFoundError:
                continue
            removed.append(p)
        if removed:
            logger.info("blob gc removed %d orphan files under %s", len(removed), self.root)
        return removed


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
