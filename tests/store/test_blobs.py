"""Content-addressed blob store: round trips, dedup, atomic writes, orphans and gc."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
from sqlalchemy import select

from depthweb.errors import InputError
from depthweb.store import BlobRef, BlobStore, session_scope
from depthweb.store.models import Blob


@pytest.mark.parametrize(
    ("shape", "dtype"),
    [
        ((4, 5), np.float32),
        ((3, 4, 3), np.uint8),
        ((7,), np.float64),
        ((2, 3), np.bool_),
        ((0, 3), np.float32),
        ((5, 6), np.uint16),
    ],
)
def test_arrays_round_trip_exactly(tmp_path, shape, dtype):
    rng = np.random.default_rng(1)
    arr = (rng.random(shape) * 1000).astype(dtype)
    store = BlobStore(tmp_path)
    ref = store.put_array(arr)
    assert ref.shape == shape and ref.dtype == np.dtype(dtype).name
    assert ref.path == f"{ref.sha256[:2]}/{ref.sha256[2:4]}/{ref.sha256}.npy"
    assert ref.nbytes == (tmp_path / ref.path).stat().st_size
    out = store.get_array(ref, verify=True)
    assert out.dtype == arr.dtype and out.shape == arr.shape
    np.testing.assert_array_equal(out, arr)


@pytest.mark.parametrize("arr", [
    np.random.default_rng(2).random((40, 30), dtype=np.float32),
    np.asfortranarray(np.random.default_rng(3).random((5, 7))),  # stored in C order
    np.arange(6, dtype=">i4").reshape(2, 3),  # big-endian keeps its byte order
    np.eye(3, dtype=bool)[:, ::2],  # a strided view
])
def test_array_files_are_the_bytes_np_save_writes(tmp_path, arr):
    """put_array hashes and writes the array's memory without copying it; the file (and so
    the content address of every blob stored before) is still exactly what np.save writes."""
    import hashlib
    import io

    ref = BlobStore(tmp_path).put_array(arr)
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
    data = (tmp_path / ref.path).read_bytes()
    assert data == buf.getvalue() and ref.sha256 == hashlib.sha256(data).hexdigest()


def test_same_content_same_blob_and_no_temp_files(tmp_path):
    store = BlobStore(tmp_path)
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    r1, r2 = store.put_array(a), store.put_array(a.copy())
    r3 = store.put_array(a.astype(np.float64))
    assert r1 == r2 and r1.sha256 != r3.sha256
    files = list(store.iter_files())
    assert sorted(p.name for p in files) == sorted({r1.path.split("/")[-1], r3.path.split("/")[-1]})
    assert store.exists(r1) and store.exists(r1.sha256) and not store.exists("f" * 64)


def test_bytes_blobs_and_bad_input(tmp_path):
    store = BlobStore(tmp_path)
    ref = store.put_bytes(b"\x89PNG fake", ".PNG")
    assert ref.path.endswith(".png") and ref.shape is None
    assert store.get_bytes(ref, verify=True) == b"\x89PNG fake"
    with pytest.raises(InputError):
        store.get_array(ref)
    with pytest.raises(InputError):
        store.put_bytes(b"x", "/../evil")
    with pytest.raises(InputError):
        store.put_array(np.array([object()], dtype=object))


def test_corruption_and_shape_mismatch_are_detected(tmp_path):
    store = BlobStore(tmp_path)
    ref = store.put_array(np.ones((2, 2), np.float32))
    wrong = BlobRef(ref.sha256, ref.path, ref.nbytes, (4,), "float32")
    with pytest.raises(InputError, match="expected"):
        store.get_array(wrong)
    path = store.path(ref)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match="corrupt"):
        store.get_array(ref, verify=True)


def test_register_needs_the_file_first(engine, tmp_path):
    store = BlobStore(tmp_path / "blobs")
    ghost = BlobRef("a" * 64, "aa/aa/" + "a" * 64 + ".npy", 10, (1,), "float32")
    with pytest.raises(InputError, match="write it before"), session_scope(engine) as s:
        store.register(s, ghost)
    ref = store.put_array(np.zeros(3, np.float32))
    with session_scope(engine) as s:
        store.register(s, ref)
        store.register(s, ref)  # idempotent
    with session_scope(engine, readonly=True) as s:
        row = s.scalars(select(Blob)).one()
        assert BlobRef.from_row(row) == ref
        assert store.missing(s) == []


def test_rolled_back_rows_leave_orphans_that_gc_removes_once_old(engine, tmp_path):
    store = BlobStore(tmp_path / "blobs")
    kept = store.put_array(np.zeros((2, 2), np.float32))
    with session_scope(engine) as s:
        store.register(s, kept)
    orphan = store.put_array(np.ones((2, 2), np.float32))
    # crash after the file was written, before the row was committed
    with pytest.raises(RuntimeError), session_scope(engine) as s:
        store.register(s, orphan)
        raise RuntimeError("crash")
    leftover = store.path(kept).parent / ".tmp-deadbeef-x.npy"
    leftover.write_bytes(b"partial")
    with session_scope(engine, readonly=True) as s:
        assert store.orphans(s) == sorted([store.path(orphan), leftover])
        assert store.gc(s, min_age_s=3600) == []  # too young: might be about to commit
        old = time.time() - 7200
        for p in (store.path(orphan), leftover):
            os.utime(p, (old, old))
        assert sorted(store.gc(s, min_age_s=3600)) == sorted([store.path(orphan), leftover])
        assert store.orphans(s) == [] and store.exists(kept) and store.missing(s) == []
        store.path(kept).unlink()
        assert store.missing(s) == [kept.sha256]
