"""Datasets, images, predictions, tasks and exports: what import, pseudo-labelling and export
write. Every insert keyed by content or by (image, model, weights) is idempotent and race-safe,
so re-running an interrupted job adds no duplicates. Admins and the CLI (``SYSTEM``) only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, exists, select
from sqlalchemy.orm import Session

from depthweb.errors import InputError
from depthweb.store.auth import Actor, require_role
from depthweb.store.blobs import BlobRef, BlobStore
from depthweb.store.errors import NotFoundError
from depthweb.store.models import (
    Dataset,
    Decision,
    Export,
    Image,
    Prediction,
    Role,
    Task,
    TaskStatus,
)
from depthweb.store.repo._common import bump_task, load_for_update
from depthweb.store.sqlutil import insert_ignore
from depthweb.types import DepthKind, Intrinsics


def create_dataset(
    *, session: Session, user: Actor, name: str, required_reviews: int = 1
) -> Dataset:
    require_role(user, Role.ADMIN)
    name = name.strip()
    if not name or len(name) > 128:
        raise InputError("Dataset names need 1 to 128 characters.")
    if required_reviews < 1:
        raise InputError("Each task needs at least one review.")
    if get_dataset(session, name) is not None:
        raise InputError(f"A dataset named {name!r} already exists; pick another name.")
    dataset = Dataset(name=name, required_reviews=required_reviews)
    session.add(dataset)
    session.flush()
    return dataset


def get_dataset(session: Session, name: str) -> Dataset | None:
    return session.scalar(select(Dataset).where(Dataset.name == name))


def require_dataset(session: Session, name: str) -> Dataset:
    dataset = get_dataset(session, name)
    if dataset is None:
        raise NotFoundError(f"There is no dataset named {name!r}; create it first.")
    return dataset


def list_datasets(session: Session) -> Sequence[Dataset]:
    return session.scalars(select(Dataset).order_by(Dataset.name)).all()


def find_image(session: Session, *, dataset_id: int, sha256: str) -> Image | None:
    """The image with this content hash in the dataset (to skip duplicates early)."""
    return session.scalar(
        select(Image).where(Image.dataset_id == dataset_id, Image.sha256 == sha256)
    )


def add_image(
    *,
    session: Session,
    user: Actor,
    dataset_id: int,
    blob: BlobRef,
    store: BlobStore,
    width: int,
    height: int,
    exif_focal_35mm: float | None = None,
    original_filename: str = "",
) -> tuple[Image, bool]:
    """Add an image whose file bytes are already in ``store``; ``(image, created)``.

    Deduplicated by the content hash within the dataset: a duplicate returns the existing row.
    """
    require_role(user, Role.ADMIN)
    if width <= 0 or height <= 0:
        raise InputError(f"Image size {width}x{height} is invalid.")
    store.register(session, blob)
    created = insert_ignore(
        session,
        Image,
        {
            "dataset_id": dataset_id,
            "sha256": blob.sha256,
            "blob_sha256": blob.sha256,
            "width": width,
            "height": height,
            "exif_focal_35mm": exif_focal_35mm,
            "original_filename": original_filename[:512],
        },
        ["dataset_id", "sha256"],
    )
    image = find_image(session, dataset_id=dataset_id, sha256=blob.sha256)
    assert image is not None
    return image, created


def add_prediction(
    *,
    session: Session,
    user: Actor,
    image_id: int,
    model: str,
    weights: str,
    kind: DepthKind | str,
    intrinsics: Intrinsics,
    depth: BlobRef,
    store: BlobStore,
    uncertainty: float | None = None,
) -> tuple[Prediction, bool]:
    """Store a teacher prediction (depth (H, W) float32 blob already in ``store``);
    ``(prediction, created)``. Unique per (image, model, weights): re-running is a no-op."""
    require_role(user, Role.ADMIN)
    if depth.shape is None or len(depth.shape) != 2:
        raise InputError("A prediction's depth blob must be an (H, W) array.")
    store.register(session, depth)
    values: dict[str, Any] = {
        "image_id": image_id,
        "model": model,
        "weights": weights or "",
        "kind": DepthKind(kind).value,
        "fx": intrinsics.fx,
        "fy": intrinsics.fy,
        "cx": intrinsics.cx,
        "cy": intrinsics.cy,
        "intrinsics_source": str(intrinsics.source),
        "intrinsics_note": intrinsics.note[:255],
        "depth_blob_sha256": depth.sha256,
        "uncertainty": uncertainty,
    }
    created = insert_ignore(session, Prediction, values, ["image_id", "model", "weights"])
    pred = session.scalar(
        select(Prediction).where(
            Prediction.image_id == image_id,
            Prediction.model == model,
            Prediction.weights == (weights or ""),
        )
    )
    assert pred is not None
    return pred, created


def images_without_prediction(
    session: Session, *, dataset_id: int, model: str, weights: str, limit: int | None = None
) -> list[Image]:
    """Images of the dataset that have no prediction from (model, weights) yet, by id:
    what a resumed pseudo-labelling job still has to do."""
    has_pred = exists().where(
        and_(
            Prediction.image_id == Image.id,
            Prediction.model == model,
            Prediction.weights == (weights or ""),
        )
    )
    stmt = select(Image).where(Image.dataset_id == dataset_id, ~has_pred).order_by(Image.id)
    return list(session.scalars(stmt.limit(limit) if limit else stmt))


def ensure_task(
    *,
    session: Session,
    user: Actor,
    image_id: int,
    prediction_id: int,
    priority: float = 0.0,
) -> tuple[Task, bool]:
    """The review task of an image, created if missing; ``(task, created)``.

    An untouched task (version 0) follows a newer prediction and priority; a task someone has
    worked on keeps its prediction.
    """
    require_role(user, Role.ADMIN)
    image = session.get(Image, image_id)
    if image is None:
        raise NotFoundError(f"There is no image {image_id}.")
    pred = session.get(Prediction, prediction_id)
    if pred is None or pred.image_id != image_id:
        raise InputError(f"Prediction {prediction_id} does not belong to image {image_id}.")
    created = insert_ignore(
        session,
        Task,
        {
            "dataset_id": image.dataset_id,
            "image_id": image_id,
            "prediction_id": prediction_id,
            "priority": float(priority),
            "required_reviews": image.dataset.required_reviews,
        },
        ["image_id"],
    )
    task = session.scalars(
        select(Task).where(Task.image_id == image_id).execution_options(populate_existing=True)
    ).one()
    untouched = task.version == 0 and task.status == TaskStatus.NEW
    if (
        not created
        and untouched
        and (task.prediction_id, task.priority) != (prediction_id, float(priority))
    ):
        task = bump_task(
            session,
            task_id=task.id,
            expected_version=0,
            prediction_id=prediction_id,
            priority=float(priority),
        )
    return task, created


def set_gold(
    *,
    session: Session,
    user: Actor,
    task_id: int,
    expected_version: int,
    gold_decision: Decision | str | None,
) -> Task:
    """Make a task a gold task with a known answer (or a normal one again with None)."""
    require_role(user, Role.ADMIN)
    load_for_update(session, task_id, expected_version)
    decision = Decision(gold_decision).value if gold_decision is not None else None
    return bump_task(
        session,
        task_id=task_id,
        expected_version=expected_version,
        is_gold=decision is not None,
        gold_decision=decision,
    )


def record_export(
    *,
    session: Session,
    user: Actor,
    dataset_id: int,
    path: str,
    filter: dict[str, Any],
    n_items: int,
    manifest_sha256: str,
) -> Export:
    """Remember an export (written to ``path`` before this row is committed)."""
    require_role(user, Role.ADMIN)
    export = Export(
        dataset_id=dataset_id,
        created_by_id=getattr(user, "id", None),
        path=path,
        filter=dict(filter),
        n_items=n_items,
        manifest_sha256=manifest_sha256,
    )
    session.add(export)
    session.flush()
    return export


def list_exports(session: Session, *, dataset_id: int) -> Sequence[Export]:
    return session.scalars(
        select(Export).where(Export.dataset_id == dataset_id).order_by(Export.id.desc())
    ).all()
