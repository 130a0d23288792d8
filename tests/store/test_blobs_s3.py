"""The blob store on object storage: an ``s3://`` URL served by moto's S3 server on loopback
(a real HTTP server in this process, reached through s3fs like any S3-compatible service).
Round trips, dedup, file before row, orphans and gc, and the review context built from
``DEPTHWEB_BLOB_URL`` settings; a store pickles as its URL (what Ray workers receive)."""

from __future__ import annotations

import contextlib
import pickle
import socket
import time
from collections.abc import Iterator

import numpy as np
import pytest
from sqlalchemy import create_engine

from depthweb.errors import InputError
from depthweb.store import BlobRef, BlobStore, session_scope, upgrade

pytest.importorskip("s3fs")
moto_server = pytest.importorskip("moto.server")

BUCKET = "depthweb-test"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=_free_port())
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_options(s3_endpoint, monkeypatch) -> dict:
    import boto3

    for var in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(var, raising=False)
    opts = {"endpoint_url": s3_endpoint, "key": "testing", "secret": "testing",
            "client_kwargs": {"region_name": "us-east-1"}}
    client = boto3.client("s3", endpoint_url=s3_endpoint, aws_access_key_id="testing",
                          aws_secret_access_key="testing", region_name="us-east-1")
    with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
        client.create_bucket(Bucket=BUCKET)
    return opts


@pytest.fixture
def s3_store(s3_options, request) -> BlobStore:
    prefix = f"t{time.time_ns()}-{request.node.name[:40]}"
    return BlobStore(f"s3://{BUCKET}/{prefix}", storage_options=s3_options)


@pytest.fixture
def sqlite_engine(tmp_path):
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    upgrade(url)
    engine = create_engine(url)
    yield engine
    engine.dispose()


def test_round_trip_dedup_and_listing(s3_store):
    arr = np.random.default_rng(0).random((5, 7)).astype(np.float32)
    ref = s3_store.put_array(arr)
    assert not s3_store.is_local and s3_store.url.startswith("s3://")
    assert ref == s3_store.put_array(arr.copy())  # same content, same blob
    np.testing.assert_array_equal(s3_store.get_array(ref, verify=True), arr)
    raw = s3_store.put_bytes(b"\x89PNG fake", ".PNG")
    assert s3_store.get_bytes(raw, verify=True) == b"\x89PNG fake"
    assert s3_store.exists(ref) and s3_store.exists(ref.sha256)
    assert not s3_store.exists("f" * 64)
    assert sorted(p.name for p in s3_store.iter_files()) == sorted(
        r.path.rsplit("/", 1)[1] for r in (ref, raw))
    assert s3_store.fs.cat_file(str(s3_store.path(ref)))[:6] == b"\x93NUMPY"
    with pytest.raises(FileNotFoundError):
        s3_store.get_bytes(BlobRef("0" * 64, "00/00/" + "0" * 64 + ".npy", 1, (1,), "float32"))


def test_file_before_row_orphans_and_gc(s3_store, sqlite_engine):
    ghost = BlobRef("a" * 64, "aa/aa/" + "a" * 64 + ".npy", 10, (1,), "float32")
    with pytest.raises(InputError, match="write it before"), session_scope(sqlite_engine) as s:
        s3_store.register(s, ghost)
    kept = s3_store.put_array(np.zeros((2, 2), np.float32))
    with session_scope(sqlite_engine) as s:
        s3_store.register(s, kept)
    orphan = s3_store.put_array(np.ones((2, 2), np.float32))
    with session_scope(sqlite_engine, readonly=True) as s:
        assert s3_store.orphans(s) == [s3_store.path(orphan)]
        assert s3_store.gc(s, min_age_s=3600) == []  # too young: may be about to commit
        assert s3_store.gc(s, min_age_s=-60) == [s3_store.path(orphan)]
        assert s3_store.orphans(s) == [] and s3_store.missing(s) == []
        s3_store.fs.rm_file(str(s3_store.path(kept)))
        assert s3_store.missing(s) == [kept.sha256]


def test_pickles_as_its_url_and_options(s3_store):
    ref = s3_store.put_array(np.arange(6, dtype=np.float32))
    clone = pickle.loads(pickle.dumps(s3_store))
    assert clone.url == s3_store.url and clone.storage_options == s3_store.storage_options
    np.testing.assert_array_equal(clone.get_array(ref), np.arange(6, dtype=np.float32))


def test_settings_put_the_review_context_on_s3(s3_options, tmp_path, image_folder_s3):
    from depthweb.config import Settings
    from depthweb.services.review import ReviewContext, import_images
    from depthweb.store import SYSTEM

    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    upgrade(url)
    settings = Settings(data_dir=tmp_path / "data", database_url=url, device="cpu",
                        blob_url=f"s3://{BUCKET}/ctx-{time.time_ns()}",
                        blob_storage_options=s3_options)
    with ReviewContext.from_settings(settings) as ctx:
        report = import_images(ctx, image_folder_s3, dataset="d", user=SYSTEM)
        assert report.added == len(image_folder_s3)
        with ctx.session(readonly=True) as s:
            assert ctx.store.missing(s) == [] and ctx.store.orphans(s) == []
    assert not (tmp_path / "data" / "blobs").exists()  # nothing went to the local default


def test_unknown_protocol_is_one_sentence():
    with pytest.raises(InputError, match="blob store"):
        BlobStore("nosuchproto://bucket/x")


@pytest.fixture
def image_folder_s3(tmp_path) -> list:
    import cv2

    paths = []
    for i in range(2):
        path = tmp_path / f"img{i}.png"
        cv2.imwrite(str(path), np.full((8, 10, 3), 40 * i, np.uint8))
        paths.append(path)
    return paths
