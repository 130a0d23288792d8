"""Content-addressed blob store: arrays (``.npy``) and raw bytes under one root, on a local or
shared filesystem or in object storage (any fsspec URL, e.g. ``s3://bucket/prefix``).

A blob's name is the sha256 of its file bytes; it lives at ``ab/cd/<sha256><suffix>`` below the
root. Files are written atomically *before* the database row that points to them is committed,
so a crash leaves at worst an orphan file (found by :meth:`BlobStore.orphans`, removed by
:meth:`BlobStore.gc`), never a row without its file. On a filesystem (a local or shared path,
``file://``) a write is a temp file, fsync, ``os.replace`` and an fsync of the directory; in
object storage it is one PUT, which is atomic (an object appears whole or not at all) and
readable by every machine once it returns. Keep the root outside every folder a web server
serves.

Object storage needs its fsspec driver (``s3fs`` for ``s3://``); credentials and endpoints come
from ``storage_options`` (see ``DEPTHWEB_BLOB_STORAGE_OPTIONS``) or the driver's usual
environment (``AWS_ACCESS_KEY_ID`` ...).
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePath, PurePosixPath
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from depthweb.errors import InputError
from depthweb.fsutil import fsync_dir
from depthweb.store.models import Blob
from depthweb.store.sqlutil import insert_ignore

logger = logging.getLogger(__name__)

TMP_MARK = ".tmp-"
_SUFFIX_RE = re.compile(r"^(\.[A-Za-z0-9]{1,10})?$")
_LOCAL_PROTOCOLS = ("file", "local")


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


def _protocol(url: str) -> str:
    head, sep, _ = url.partition("://")
    return head.lower() if sep and re.fullmatch(r"[a-zA-Z][a-zA-Z0-9+.-]*", head) else ""


def _open_fs(url: str, options: Mapping[str, Any]) -> tuple[Any, str]:
    """``(fsspec filesystem, root path inside it)`` for an object-storage URL."""
    import fsspec

    try:
        fs, base = fsspec.core.url_to_fs(url, **dict(options))
    except ImportError as exc:
        raise InputError(
            f"The blob store {url!r} needs an fsspec driver that is not installed "
            f"({exc.name or exc}); e.g. `pip install s3fs` for s3:// URLs."
        ) from exc
    except ValueError as exc:
        raise InputError(f"The blob store URL {url!r} is not usable ({exc}).") from exc
    return fs, base.rstrip("/")


def _mtime(info: Mapping[str, Any]) -> float:
    """Modification time (epoch seconds) from an fsspec ``info`` dict (0 when unknown)."""
    for key in ("mtime", "LastModified", "last_modified", "updated", "created"):
        value = info.get(key)
        if isinstance(value, datetime):
            return value.timestamp()
        if isinstance(value, int | float):
            return float(value)
        if isinstance(value, str) and value:
            try:
                return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
            except ValueError:
                continue
    return 0.0


def open_blob_store(url: str, storage_options: Mapping[str, Any] | None = None) -> BlobStore:
    """The store at ``url`` (pickling helper: a store travels as its URL and options)."""
    return BlobStore(url, storage_options=storage_options)


class BlobStore:
    """Blobs under ``root``; :meth:`register` adds the database row for a written blob.

    ``root``: a local or shared directory (``str``/``Path``, or ``file://...``), or an fsspec
    URL of object storage (``s3://bucket/prefix``) with its ``storage_options`` (e.g.
    ``{"endpoint_url": "http://minio:9000", "key": ..., "secret": ...}``). :attr:`root` is the
    root inside :attr:`fs`: a :class:`~pathlib.Path` for a local store, a
    :class:`~pathlib.PurePosixPath` (``bucket/prefix``) for object storage; every path this
    store returns is ``root / <relative path>`` of that type.
    """

    def __init__(
        self, root: str | Path, *, storage_options: Mapping[str, Any] | None = None
    ) -> None:
        text = os.fspath(root)
        self.storage_options = dict(storage_options or {})
        proto = _protocol(text)
        self.is_local = proto in ("", *_LOCAL_PROTOCOLS)
        self.fs: Any = None
        if self.is_local:
            local = text.split("://", 1)[1] if proto else text
            self.root: PurePath = Path(local)
            self.url = str(self.root)
        else:
            self.fs, base = _open_fs(text, self.storage_options)
            self.root = PurePosixPath(base)
            self.url = text.rstrip("/")

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return open_blob_store, (self.url, self.storage_options)

    def __repr__(self) -> str:
        return f"BlobStore({self.url!r})"

    # ----------------------------------------------------------------------------- writing
    def put_array(self, array: np.ndarray, *, replace: bool = False) -> BlobRef:
        """Store ``array`` (any shape, numeric or bool dtype) as ``.npy``; returns its ref.
        ``replace``: write even when a file of that name and size exists (a repair of a
        damaged file)."""
        arr, header, sha = self._npy(array)
        rel = self._relpath(sha, ".npy")
        self._write(rel, header, arr, replace=replace)
        return BlobRef(sha, rel, len(header) + arr.nbytes, tuple(int(s) for s in arr.shape),
                       str(arr.dtype))

    @staticmethod
    def _npy(array: np.ndarray) -> tuple[np.ndarray, bytes, str]:
        """(contiguous array, ``.npy`` header, sha256 of the file bytes): the bytes of np.save
        (format 1.0: header, then the array's memory), hashed from the array itself, so a
        7-megapixel label is not copied on the way."""
        arr = np.ascontiguousarray(array)
        if arr.dtype.hasobject:
            raise InputError("Object arrays cannot be stored; convert to a numeric dtype first.")
        buf = io.BytesIO()
        np.lib.format.write_array_header_1_0(buf, np.lib.format.header_data_from_array_1_0(arr))
        header = buf.getvalue()
        digest = hashlib.sha256(header)
        digest.update(arr)
        return arr, header, digest.hexdigest()

    @classmethod
    def array_sha256(cls, array: np.ndarray) -> str:
        """The sha256 :meth:`put_array` would give ``array`` (nothing is written)."""
        return cls._npy(array)[2]

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

    def _write(self, rel: str, *parts: bytes | np.ndarray, replace: bool = False) -> None:
        """Write the concatenation of ``parts`` (bytes or C-contiguous arrays) at ``rel``."""
        size = sum(memoryview(p).nbytes for p in parts)
        if not self.is_local:
            # One PUT: atomic, and it refreshes the object's age for gc when it existed.
            self.fs.pipe_file(str(self.root / rel), b"".join(memoryview(p).cast("B")
                                                             for p in parts))
            return
        target = Path(self.root) / rel
        if not replace and target.is_file() and target.stat().st_size == size:
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
                for part in parts:
                    fh.write(part)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        fsync_dir(target.parent)

    def register(self, session: Session, ref: BlobRef) -> None:
        """Add the row for a blob already written (idempotent, race-safe)."""
        if not self._is_file(ref.path):
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
    def path(self, ref: BlobRef) -> PurePath:
        """Where the blob is: a ``Path`` (local store) or its path inside :attr:`fs`."""
        return self.root / ref.path

    def _is_file(self, rel: str) -> bool:
        if self.is_local:
            return (Path(self.root) / rel).is_file()
        path = str(self.root / rel)
        self.fs.invalidate_cache(path)
        return bool(self.fs.isfile(path))

    def exists(self, ref: BlobRef | str) -> bool:
        """Whether the blob file is there (``ref`` may be a bare sha256)."""
        if isinstance(ref, BlobRef):
            return self._is_file(ref.path)
        if not re.fullmatch(r"[0-9a-f]{4,64}", ref):
            return False
        shard = self.root / ref[:2] / ref[2:4]
        if self.is_local:
            return Path(shard).is_dir() and any(Path(shard).glob(f"{ref}*"))
        self.fs.invalidate_cache(str(shard))
        return bool(self.fs.glob(f"{shard}/{ref}*"))

    def existing(self, paths: Iterable[str]) -> set[str]:
        """Which of these relative blob paths are there (object storage: one listing, not a
        request per path)."""
        wanted = set(paths)
        if not wanted:
            return set()
        if self.is_local:
            return {p for p in wanted if (Path(self.root) / p).is_file()}
        return wanted & {self._rel(p) for p, _ in self._listing()}

    def get_bytes(self, ref: BlobRef, *, verify: bool = False) -> bytes:
        """The blob's bytes (``FileNotFoundError`` when it is gone); ``verify``: check sha256."""
        if self.is_local:
            data = (Path(self.root) / ref.path).read_bytes()
        else:
            data = self.fs.cat_file(str(self.root / ref.path))
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
    def _listing(self) -> Iterator[tuple[PurePath, float]]:
        """``(path, modification time)`` of every file below the root."""
        if self.is_local:
            root = Path(self.root)
            if root.is_dir():
                for p in root.rglob("*"):
                    try:
                        if p.is_file():
                            yield p, p.stat().st_mtime
                    except FileNotFoundError:
                        continue
            return
        self.fs.invalidate_cache(str(self.root))
        if not self.fs.exists(str(self.root)):
            return
        for name, info in self.fs.find(str(self.root), detail=True).items():
            if info.get("type", "file") == "file":
                yield PurePosixPath(name), _mtime(info)

    def iter_files(self) -> Iterator[PurePath]:
        """Every file below the root (blobs and leftover temp files)."""
        yield from (p for p, _ in self._listing())

    def _rel(self, path: PurePath) -> str:
        return path.relative_to(self.root).as_posix()

    def orphans(self, session: Session, *, min_age_s: float = 0.0) -> list[PurePath]:
        """Files with no ``blobs`` row (and leftover temp files) older than ``min_age_s``."""
        known = set(session.scalars(select(Blob.path)))
        cutoff = time.time() - min_age_s
        return sorted(
            p for p, mtime in self._listing()
            if (self._rel(p) not in known or p.name.startswith(TMP_MARK)) and mtime <= cutoff
        )

    def missing(self, session: Session) -> list[str]:
        """sha256 of rows whose file is not there (should always be empty)."""
        rows = session.execute(select(Blob.sha256, Blob.path)).all()
        present = {self._rel(p) for p, _ in self._listing()}
        return sorted(sha for sha, path in rows if path not in present)

    def _age_ok(self, path: PurePath, cutoff: float) -> bool:
        """Whether ``path`` is still there and not modified after ``cutoff``."""
        if self.is_local:
            return Path(path).stat().st_mtime <= cutoff
        self.fs.invalidate_cache(str(path))
        return _mtime(self.fs.info(str(path))) <= cutoff

    def gc(self, session: Session, *, min_age_s: float = 3600.0) -> list[PurePath]:
        """Delete orphan files older than ``min_age_s`` (younger ones may be about to get their
        row committed); returns the deleted paths."""
        removed = []
        cutoff = time.time() - min_age_s
        for p in self.orphans(session, min_age_s=min_age_s):
            try:
                if not self._age_ok(p, cutoff):
                    continue  # a writer reused this file since it was listed
                if self.is_local:
                    Path(p).unlink()
                else:
                    self.fs.rm_file(str(p))
            except FileNotFoundError:
                continue
            removed.append(p)
        if removed:
            logger.info("blob gc removed %d orphan files under %s", len(removed), self.url)
        return removed
