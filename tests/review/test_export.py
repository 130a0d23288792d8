"""Export: the best label per image, rejected ones left out, filters, the manifest contract
(JSONL = Parquet), files that match the labels, atomic placement, path checks, Hub push."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import ClassVar

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image as PILImage
from sqlalchemy import select

from depthweb.errors import DepthwebError, InputError
from depthweb.services.review import (
    current_label,
    export_dataset,
    resolve_out_dir,
    save_correction,
)
from depthweb.store import SYSTEM, PermissionDeniedError
from depthweb.store.models import Export, Image
from depthweb.store.repo import approve_task, reject_task, set_gold
from tests.review.conftest import make_tasks, scene_disparity

CONTRACT = {"image", "label", "mask", "kind", "source", "status", "weight", "split",
            "intrinsics", "image_id", "dataset", "teacher", "teacher_weights"}


def sky(h: int = 48, w: int = 64) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[:6] = True
    return m


@pytest.fixture
def reviewed(ctx, users):
    """Six tasks: 0 corrected + approved, 1 approved, 2 rejected, 3 untouched, 4 corrected
    (not approved), 5 gold with the answer approve."""
    t = make_tasks(ctx, [scene_disparity(i) for i in range(6)], dataset="rooms")
    rev = users["rev"]
    r = save_correction(ctx, task_id=t[0], user=rev, expected_version=0, action="mask",
                        region=sky())
    r = save_correction(ctx, task_id=t[0], user=rev, expected_version=r.task_version,
                        action="anchors", payload={"anchors": [[5, 40, 1.2], [50, 10, 3.5]]})
    with ctx.session() as s:
        approve_task(session=s, task_id=t[0], user=rev, expected_version=r.task_version)
        approve_task(session=s, task_id=t[1], user=rev, expected_version=0)
        reject_task(session=s, task_id=t[2], user=rev, expected_version=0, reasons=["sky"])
        set_gold(session=s, task_id=t[5], user=SYSTEM, expected_version=0,
                 gold_decision="approve")
    save_correction(ctx, task_id=t[4], user=rev, expected_version=0, action="far_fill",
                    region=sky())
    return t


@pytest.fixture
def exports(tmp_path: Path) -> Path:
    """An empty folder for exports (tmp_path also holds the database and the blob store)."""
    path = tmp_path / "exports"
    path.mkdir()
    return path


def manifest(path: Path) -> list[dict]:
    return [json.loads(line) for line in (path / "manifest.jsonl").read_text().splitlines()]


def test_default_export_has_every_image_once_with_its_best_label(ctx, reviewed, exports):
    report = export_dataset(ctx, "rooms", exports / "out", user=SYSTEM)
    out = report.path
    rows = {r["task_id"]: r for r in manifest(out)}
    t = reviewed
    assert set(rows) == {t[0], t[1], t[3], t[4], t[5]} and report.count == 5  # 2 rejected
    expect = {t[0]: ("corrected", "approved", 1.0, "metric_depth"),
              t[1]: ("pseudo", "approved", 1.0, "relative_disparity"),
              t[3]: ("pseudo", "unreviewed", 0.5, "relative_disparity"),
              t[4]: ("corrected", "unreviewed", 0.5, "relative_disparity"),
              t[5]: ("pseudo", "approved", 1.0, "relative_disparity")}
    for tid, (source, status, weight, kind) in expect.items():
        row = rows[tid]
        assert (row["source"], row["status"], row["weight"], row["kind"]) == (
            source, status, weight, kind), tid
        assert set(row) >= CONTRACT and row["dataset"] == "rooms"
        assert row["teacher"] == "teacher" and row["teacher_weights"] == "w1"
        assert row["split"] in {"train", "val"}
        assert set(row["intrinsics"]) == {"fx", "fy", "cx", "cy", "source"}
    assert len({r["image_id"] for r in rows.values()}) == 5

    with ctx.session(readonly=True) as s:
        for tid, row in rows.items():
            label = current_label(s, tid, store=ctx.store)
            arr = np.load(out / row["label"])
            assert arr.dtype == np.float32 and np.array_equal(arr, label.depth, equal_nan=True)
            image = s.get(Image, row["image_id"])
            png = (out / row["image"]).read_bytes()
            assert row["image"] == f"images/{image.sha256}.png"
            assert hashlib.sha256(png).hexdigest() == image.sha256
            assert np.asarray(PILImage.open(out / row["image"])).shape == (48, 64, 3)
            if label.ignore_mask.any():
                mask = np.asarray(PILImage.open(out / row["mask"]))
                assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 255}
                assert np.array_equal(mask == 255, label.ignore_mask)
            else:
                assert row["mask"] is None
    assert rows[t[0]]["mask"] == f"masks/{rows[t[0]]['image_id']}.png"

    meta = json.loads((out / "export.json").read_text())
    sha = hashlib.sha256((out / "manifest.jsonl").read_bytes()).hexdigest()
    assert (meta["dataset"], meta["filter"], meta["count"], meta["manifest_sha256"]) == (
        "rooms", "best", 5, sha)
    table = pq.read_table(out / "manifest.parquet").to_pylist()
    assert sorted(table, key=lambda r: r["task_id"]) == sorted(
        manifest(out), key=lambda r: r["task_id"])
    with ctx.session(readonly=True) as s:
        [row] = s.scalars(select(Export)).all()
        assert (row.n_items, row.manifest_sha256, row.path) == (5, sha, str(out))
    assert [p.name for p in exports.iterdir()] == ["out"]  # no temp folder left behind


@pytest.mark.parametrize(("flt", "picked"), [("approved", [0, 1, 5]), ("corrected", [0]),
                                            ("unreviewed", [3, 4]), ("pseudo", [1, 3, 5])])
def test_filters_select_subsets(ctx, reviewed, exports, flt, picked):
    report = export_dataset(ctx, "rooms", exports / flt, user=SYSTEM, filter=flt)
    assert sorted(r["task_id"] for r in manifest(report.path)) == [reviewed[i] for i in picked]
    assert json.loads((report.path / "export.json").read_text())["filter"] == flt
    labels = {p.name for p in (report.path / "labels").iterdir()}
    assert len(labels) == len(picked)


def test_export_reads_back_as_a_training_set(ctx, reviewed, exports):
    from depthweb.training.datasets import ExportDataset

    report = export_dataset(ctx, "rooms", exports / "out", user=SYSTEM, val_fraction=0.0)
    data = ExportDataset(report.path, (32, 32))
    assert len(data) == 5
    sample = data[0]
    assert sample["image"].shape == (3, 32, 32) and sample["valid"].any()


def test_existing_folder_is_kept_unless_overwrite(ctx, reviewed, exports):
    out = exports / "out"
    out.mkdir()
    (out / "precious.txt").write_text("mine")
    with pytest.raises(InputError, match="already holds files"):
        export_dataset(ctx, "rooms", out, user=SYSTEM)
    assert [p.name for p in out.iterdir()] == ["precious.txt"]
    assert sorted(p.name for p in exports.iterdir()) == ["out"]
    report = export_dataset(ctx, "rooms", out, user=SYSTEM, overwrite=True)
    assert not (out / "precious.txt").exists() and report.count == 5
    assert sorted(p.name for p in exports.iterdir()) == ["out"]


def test_paths_outside_the_base_are_refused(ctx, reviewed, exports):
    base = exports / "base"
    base.mkdir()
    for bad in ["../escape", "a/../../escape", str(exports / "elsewhere"), ".", ""]:
        with pytest.raises(InputError):
            resolve_out_dir(bad, base)
        with pytest.raises(InputError):
            export_dataset(ctx, "rooms", bad, user=SYSTEM, base_dir=base)
    assert not (exports / "escape").exists() and not (exports / "elsewhere").exists()
    report = export_dataset(ctx, "rooms", "run1", user=SYSTEM, base_dir=base)
    assert report.path == base.resolve() / "run1"
    with pytest.raises(InputError, match="blob store"):
        export_dataset(ctx, "rooms", ctx.store.root / "x", user=SYSTEM)


def test_only_admins_export(ctx, reviewed, users, exports):
    for name in ("rev", "view"):
        with pytest.raises(PermissionDeniedError):
            export_dataset(ctx, "rooms", exports / name, user=users[name])
        assert not (exports / name).exists()


class RecordingHub:
    """Stands in for huggingface_hub.HfApi (the network is a boundary tests cannot reach)."""

    calls: ClassVar[list] = []

    def create_repo(self, repo_id, **kw):
        self.calls.append(("create_repo", repo_id, kw))

    def upload_folder(self, *, folder_path, repo_id, repo_type, **kw):
        files = sorted(p.relative_to(folder_path).as_posix()
                       for p in Path(folder_path).rglob("*") if p.is_file())
        self.calls.append(("upload_folder", folder_path, repo_id, repo_type, files))
        return type("Info", (), {"commit_url": f"https://hub/{repo_id}/commit/1"})()


def test_push_to_hub_uploads_the_export_folder(ctx, reviewed, exports, monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "HfApi", RecordingHub)
    monkeypatch.setattr(RecordingHub, "calls", [])
    with pytest.raises(DepthwebError, match="HF_HUB_OFFLINE"):
        export_dataset(ctx, "rooms", exports / "a", user=SYSTEM, push_to_hub="me/rooms")
    assert RecordingHub.calls == []
    monkeypatch.delenv("HF_HUB_OFFLINE")
    report = export_dataset(ctx, "rooms", exports / "b", user=SYSTEM, push_to_hub="me/rooms")
    create, upload = RecordingHub.calls
    assert create[:2] == ("create_repo", "me/rooms") and create[2]["repo_type"] == "dataset"
    assert upload[1:4] == (str(report.path), "me/rooms", "dataset")
    assert {"manifest.jsonl", "manifest.parquet", "export.json"} <= set(upload[4])
    assert sum(f.startswith("labels/") for f in upload[4]) == 5
    assert report.pushed == "https://hub/me/rooms/commit/1"
    with pytest.raises(InputError, match="repo id"):
        export_dataset(ctx, "rooms", exports / "c", user=SYSTEM, push_to_hub="../x")


class UnreachableHub(RecordingHub):
    """The Hub's client when the network is down: its HTTP library raises a transport error."""

    def create_repo(self, repo_id, **kw):
        from huggingface_hub.utils._http import httpx2

        raise httpx2.ConnectError("[Errno 111] Connection refused")


def test_an_unreachable_hub_is_one_sentence_and_the_export_is_kept(ctx, reviewed, exports,
                                                                     monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "HfApi", UnreachableHub)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    with pytest.raises(DepthwebError, match="Pushing to the Hub dataset me/rooms failed") as info:
        export_dataset(ctx, "rooms", exports / "d", user=SYSTEM, push_to_hub="me/rooms")
    assert "export is kept at" in str(info.value)
    assert (exports / "d" / "manifest.jsonl").is_file()  # the export itself was not lost
