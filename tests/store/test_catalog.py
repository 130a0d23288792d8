"""Import and pseudo-labelling writes: dedup by content, idempotent re-runs, export records."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import func, select

from depthweb.errors import InputError
from depthweb.store import SYSTEM, PermissionDeniedError, session_scope
from depthweb.store.models import Image, Prediction, Task
from depthweb.store.repo import (
    add_correction,
    add_image,
    add_prediction,
    approve_task,
    create_dataset,
    ensure_task,
    images_without_prediction,
    label_records,
    list_exports,
    record_export,
    reject_task,
)
from depthweb.types import DepthKind, Intrinsics, IntrinsicsSource

INTR = Intrinsics(500.0, 500.0, 4.0, 3.0, IntrinsicsSource.EXIF, "35mm focal 28")


def _count(engine, model):
    with session_scope(engine, readonly=True) as s:
        return s.scalar(select(func.count()).select_from(model))


def _pseudo_label(engine, store, dataset_id, model="teacher", weights="v1", seed=0):
    """What a (re-)run of the pseudo-labelling job writes: files first, then rows."""
    rng = np.random.default_rng(seed)
    with session_scope(engine, readonly=True) as s:
        todo = [
            i.id
            for i in images_without_prediction(
                s, dataset_id=dataset_id, model=model, weights=weights
            )
        ]
    for image_id in todo:
        depth = store.put_array(rng.random((6, 8), dtype=np.float32))
        with session_scope(engine) as s:
            pred, _ = add_prediction(
                session=s,
                user=SYSTEM,
                image_id=image_id,
                model=model,
                weights=weights,
                kind=DepthKind.METRIC_DEPTH,
                intrinsics=INTR,
                depth=depth,
                store=store,
                uncertainty=0.5,
            )
            ensure_task(
                session=s, user=SYSTEM, image_id=image_id, prediction_id=pred.id, priority=0.5
            )
    return todo


def test_images_are_deduplicated_by_content_per_dataset(engine, store, make_users):
    users = make_users(boss="admin", ann="reviewer")
    photos = [store.put_bytes(bytes([i]) * 100, ".jpg") for i in range(3)]
    with session_scope(engine) as s:
        d1 = create_dataset(session=s, user=SYSTEM, name="one")
        d2 = create_dataset(session=s, user=users["boss"], name="two")
        created = [
            add_image(
                session=s,
                user=SYSTEM,
                dataset_id=d1.id,
                blob=p,
                store=store,
                width=8,
                height=6,
                exif_focal_35mm=28.0,
            )[1]
            for p in photos
        ]
        again, dup = add_image(
            session=s, user=SYSTEM, dataset_id=d1.id, blob=photos[0], store=store, width=8, height=6
        )
        _, other = add_image(
            session=s, user=SYSTEM, dataset_id=d2.id, blob=photos[0], store=store, width=8, height=6
        )
        assert created == [True, True, True] and dup is False and other is True
        assert again.sha256 == photos[0].sha256 and again.exif_focal_35mm == 28.0
        with pytest.raises(PermissionDeniedError):
            add_image(
                session=s,
                user=users["ann"],
                dataset_id=d1.id,
                blob=photos[1],
                store=store,
                width=8,
                height=6,
            )
        with pytest.raises(InputError, match="already exists"):
            create_dataset(session=s, user=SYSTEM, name="one")
    assert _count(engine, Image) == 4


def test_pseudo_labelling_is_resumable_and_idempotent(engine, store):
    with session_scope(engine) as s:
        ds = create_dataset(session=s, user=SYSTEM, name="d", required_reviews=2)
        for i in range(4):
            add_image(
                session=s,
                user=SYSTEM,
                dataset_id=ds.id,
                width=8,
                height=6,
                blob=store.put_bytes(bytes([i]) * 10, ".png"),
                store=store,
            )
    first = _pseudo_label(engine, store, ds.id)
    assert len(first) == 4
    assert _pseudo_label(engine, store, ds.id) == []  # re-run: nothing left to do
    with session_scope(engine) as s:  # a crashed run that did the file but not the rows
        image_id = first[0]
        pred, created = add_prediction(
            session=s,
            user=SYSTEM,
            image_id=image_id,
            model="teacher",
            weights="v1",
            kind="metric_depth",
            intrinsics=INTR,
            depth=store.put_array(np.ones((6, 8))),
            store=store,
        )
        assert not created and pred.fx == 500.0 and pred.intrinsics_source == "exif"
        task, created = ensure_task(
            session=s, user=SYSTEM, image_id=image_id, prediction_id=pred.id, priority=0.5
        )
        assert not created and task.required_reviews == 2
    assert (_count(engine, Prediction), _count(engine, Task)) == (4, 4)
    # a second teacher: new predictions, an untouched task follows the newest one
    _pseudo_label(engine, store, ds.id, model="student", weights="s1", seed=1)
    with session_scope(engine, readonly=True) as s:
        models = {t.prediction.model for t in s.scalars(select(Task))}
    assert models == {"student"} and _count(engine, Prediction) == 8


def test_worked_on_tasks_keep_their_prediction(make_world):
    w = make_world(n_tasks=1)
    tid = w.task_ids[0]
    with session_scope(w.engine) as s:
        approve_task(session=s, task_id=tid, user=w.user("rev"), expected_version=0)
        task = s.get(Task, tid)
        image_id, old_pred = task.image_id, task.prediction_id
        depth = w.store.put_array(np.zeros((6, 8), np.float32))
        pred, _ = add_prediction(
            session=s,
            user=SYSTEM,
            image_id=image_id,
            model="other",
            weights="",
            kind="relative_disparity",
            intrinsics=INTR,
            depth=depth,
            store=w.store,
        )
        task, created = ensure_task(
            session=s, user=SYSTEM, image_id=image_id, prediction_id=pred.id, priority=9.0
        )
        assert not created and task.prediction_id == old_pred and task.version == 1


def test_label_records_and_exports(make_world):
    w = make_world(n_tasks=3)
    t0, t1, t2 = w.task_ids
    rev = w.user("rev")
    mask = w.store.put_array(np.ones((6, 8), bool))
    with session_scope(w.engine) as s:
        add_correction(
            session=s,
            task_id=t0,
            user=rev,
            expected_version=0,
            action="mask",
            blob=mask,
            store=w.store,
        )
        approve_task(session=s, task_id=t0, user=rev, expected_version=1)
        reject_task(session=s, task_id=t1, user=rev, expected_version=0, reasons=["mirror"])
    with session_scope(w.engine, readonly=True) as s:
        records = label_records(s, dataset_id=w.dataset_id)
        assert [(r.task.id, r.status, r.is_corrected) for r in records] == [
            (t0, "approved", True),
            (t1, "rejected", False),
            (t2, "new", False),
        ]
        assert records[0].corrections[0].blob.sha256 == mask.sha256
        assert records[0].prediction.depth_blob.shape == [6, 8]
        approved = label_records(s, dataset_id=w.dataset_id, statuses=["approved"])
        assert [r.task.id for r in approved] == [t0]
    with session_scope(w.engine) as s:
        with pytest.raises(PermissionDeniedError):
            record_export(
                session=s,
                user=rev,
                dataset_id=w.dataset_id,
                path="/x",
                filter={},
                n_items=1,
                manifest_sha256="0" * 64,
            )
        record_export(
            session=s,
            user=w.user("admin"),
            dataset_id=w.dataset_id,
            path="/out/a",
            filter={"status": ["approved"]},
            n_items=1,
            manifest_sha256="a" * 64,
        )
    with session_scope(w.engine, readonly=True) as s:
        (export,) = list_exports(s, dataset_id=w.dataset_id)
        assert (export.filter, export.n_items, export.created_by_id) == (
            {"status": ["approved"]},
            1,
            w.user("admin").id,
        )
