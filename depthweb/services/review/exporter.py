"""Export a dataset's labels as a training set (the contract in docs/dev/HELPERS.md).

Layout (paths relative to the export directory): ``images/<sha256>.png`` (RGB 8-bit),
``labels/<image_id>.npy`` (float32 (H, W), NaN invalid, in ``kind`` space),
``masks/<image_id>.png`` (uint8, 255 = ignore; the row's ``mask`` is null when nothing is
ignored), ``manifest.jsonl`` and ``manifest.parquet`` (the same rows), and ``export.json``
(dataset, created_at, filter, count, sha256 of manifest.jsonl).

Which rows: every image that has a review task appears once with its best label: the task's
current label (teacher prediction + corrections); ``status`` approved when the task is approved
(or is a gold task whose known answer is approve), else unreviewed; rejected tasks (and gold
tasks whose answer is reject) are left out. ``source``: corrected when the label has
corrections, ground_truth for predictions stored as ground truth, else pseudo. So an approved
correction beats an approved pseudo-label beats an unreviewed pseudo-label. ``filter`` picks a
subset (:data:`FILTERS`). ``split`` is val for a stable ``val_fraction`` of images (by content
hash), so an image keeps its split across exports.

The export is written into a hidden temporary sibling directory (``.<name>.tmp-<id>``) and
renamed into place (an existing export is swapped out atomically with ``--overwrite``): no
reader ever sees a half-written export, and the target is never missing. The ``exports`` row is
committed after the rename. One export at a time per target (a lock file ``.<name>.lock``
beside it); so each run first removes the hidden leftovers of runs that were killed, and
records the row a killed run did not get to commit for a complete export it left in place.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select

from depthweb.errors import DepthwebError, InputError
from depthweb.fsutil import fsync_tree
from depthweb.services.review.context import ReviewContext, blob_root
from depthweb.services.review.export_files import (
    check_target,
    export_lock,
    leftovers,
    place,
    read_export_meta,
)
from depthweb.services.review.importer import encode_png
from depthweb.services.review.labels import Label, export_label, read_blob
from depthweb.store import SYSTEM
from depthweb.store.auth import Actor, require_role
from depthweb.store.errors import BrokenTaskError
from depthweb.store.models import Dataset, Decision, Export, Role, TaskStatus
from depthweb.store.repo import (
    LabelRecord,
    count_unlabelled,
    get_task,
    label_records,
    mark_broken,
    record_export,
    require_dataset,
)

log = logging.getLogger(__name__)

FORMAT = "depthweb-export/1"
FILTERS: dict[str, Callable[[str, str], bool]] = {
    "best": lambda status, source: True,
    "approved": lambda status, source: status == "approved",
    "corrected": lambda status, source: status == "approved" and source == "corrected",
    "pseudo": lambda status, source: source == "pseudo",
    "unreviewed": lambda status, source: status == "unreviewed",
}
"""``best`` (default): every non-rejected image; ``approved``; ``corrected`` (approved
corrections); ``pseudo`` (uncorrected teacher labels); ``unreviewed``."""

MAX_NAME_BYTES = 200
"""Longest export folder name typed into the web app (the file system allows 255 bytes, and
the temporary and lock siblings add a few)."""
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")
_REPO_RE = re.compile(r"^(?:[A-Za-z0-9][\w.-]{0,95}/)?[A-Za-z0-9][\w.-]{0,95}$")
ProgressFn = Callable[[int, int, str], None]


@dataclass
class ExportReport:
    path: Path
    count: int
    manifest_sha256: str
    export_id: int
    filter: str
    pushed: str | None = None
    broken: list[int] = field(default_factory=list)
    unlabelled: int = 0

    def summary(self) -> str:
        pushed = f", pushed to {self.pushed}" if self.pushed else ""
        out = f"{self.count} samples ({self.filter}) -> {self.path}{pushed}"
        if self.broken:
            out += (f"; {len(self.broken)} task(s) left out because a file is missing or "
                    f"corrupt (set aside as broken: {', '.join(map(str, self.broken[:10]))})")
        if self.unlabelled:
            out += (f"; {self.unlabelled} image(s) of the dataset are still unlabelled (a "
                    "pseudo-label job may still be running) and are not in this export")
        return out


def resolve_out_dir(out_dir: str | Path, base_dir: str | Path | None = None) -> Path:
    """The absolute export directory; with ``base_dir`` it must lie strictly inside it and
    may not contain ``..`` (names typed into the web app)."""
    if "\x00" in str(out_dir):
        raise InputError("The export folder name contains a NUL byte; use a plain name.")
    out = Path(out_dir).expanduser()
    if base_dir is None:
        return out.resolve()
    if any(len(os.fsencode(part)) > MAX_NAME_BYTES for part in out.parts):
        raise InputError(f"The export name is too long; use at most {MAX_NAME_BYTES} bytes.")
    if ".." in out.parts:
        raise InputError(f"The export name {str(out_dir)!r} contains '..'; use a plain name.")
    base = Path(base_dir).expanduser().resolve()
    target = (base / out).resolve()
    if target == base or not target.is_relative_to(base):
        raise InputError(f"The export must go into a folder inside {base}; use a plain name.")
    return target


def _status(record: LabelRecord) -> str | None:
    """approved | unreviewed, or None for rows that are never exported."""
    task = record.task
    if task.is_gold:
        return "approved" if task.gold_decision == Decision.APPROVE else None
    if task.status in (TaskStatus.REJECTED, TaskStatus.BROKEN):
        return None
    return "approved" if task.status == TaskStatus.APPROVED else "unreviewed"


def _split(sha256: str, val_fraction: float) -> str:
    return "val" if int(sha256[:8], 16) / 2**32 < val_fraction else "train"


def _image_png(ctx: ReviewContext, record: LabelRecord) -> bytes:
    data = read_blob(ctx.store, record.image.blob, "photo")  # always re-verified
    if data.startswith(b"\x89PNG\r\n\x1a\n") and record.image.blob.path.endswith(".png"):
        return data
    from depthweb.imaging import load_image

    return encode_png(load_image(data, name=record.image.original_filename).rgb)


def _write(path: Path, data: bytes) -> None:
    """Write a file of the export being built in its hidden folder (flushed to disk as a whole
    by :func:`depthweb.fsutil.fsync_tree` before the folder is put in place)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _npy(arr: np.ndarray) -> bytes:
    from depthweb.services.export import npy_bytes

    return npy_bytes(arr)


def _write_sample(tmp: Path, ctx: ReviewContext, record: LabelRecord, label: Label) -> dict:
    image = record.image
    if not _SHA_RE.match(image.sha256):
        raise DepthwebError(f"Image {image.id} has an invalid content hash; run a store check.")
    _write(tmp / "images" / f"{image.sha256}.png", _image_png(ctx, record))
    _write(tmp / "labels" / f"{image.id}.npy", _npy(label.depth.astype(np.float32)))
    mask = None
    if label.ignore_mask.any():
        mask = f"masks/{image.id}.png"
        _write(tmp / mask, _gray_png(label.ignore_mask))
    pred = record.prediction
    return {
        "image_id": image.id, "task_id": record.task.id, "dataset": "",
        "image": f"images/{image.sha256}.png", "label": f"labels/{image.id}.npy",
        "mask": mask, "kind": str(label.kind), "source": label.source,
        "intrinsics": {"fx": label.intrinsics.fx, "fy": label.intrinsics.fy,
                       "cx": label.intrinsics.cx, "cy": label.intrinsics.cy,
                       "source": str(label.intrinsics.source)},
        "teacher": pred.model, "teacher_weights": pred.weights,
        "width": image.width, "height": image.height,
    }


def _gray_png(mask: np.ndarray) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".png", mask.astype(np.uint8) * 255)
    if not ok:
        raise DepthwebError("The ignore mask could not be encoded as PNG.")
    return buf.tobytes()


def _parquet(rows: list[dict], path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    intr = pa.struct([(k, pa.float64()) for k in ("fx", "fy", "cx", "cy")]
                     + [("source", pa.string())])
    schema = pa.schema([
        ("image_id", pa.int64()), ("task_id", pa.int64()), ("dataset", pa.string()),
        ("image", pa.string()), ("label", pa.string()), ("mask", pa.string()),
        ("kind", pa.string()), ("source", pa.string()), ("status", pa.string()),
        ("weight", pa.float64()), ("split", pa.string()), ("intrinsics", intr),
        ("teacher", pa.string()), ("teacher_weights", pa.string()),
        ("width", pa.int64()), ("height", pa.int64()),
    ])
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)


def recover_target(ctx: ReviewContext, target: Path) -> list[Path]:
    """Clean up after exports to ``target`` that were killed (call with :func:`export_lock`
    held): delete their hidden leftovers (returned) and, when the export at ``target`` is
    complete but its row was never committed, record that row (created by nobody)."""
    removed = leftovers(target)
    for path in removed:
        shutil.rmtree(path, ignore_errors=True)
    if removed:
        log.warning("removed %d leftover(s) of killed exports to %s", len(removed), target)
    meta = read_export_meta(target) if target.is_dir() else None
    if meta is None:
        return removed
    with ctx.session() as s:
        newest = s.scalars(select(Export).where(Export.path == str(target))
                           .order_by(Export.id.desc()).limit(1)).first()
        ds = s.scalars(select(Dataset).where(Dataset.name == meta.get("dataset"))).first()
        if ds is not None and (newest is None or newest.manifest_sha256 !=
                               meta["manifest_sha256"]):
            record_export(session=s, user=SYSTEM, dataset_id=ds.id, path=str(target),
                          filter={"filter": meta.get("filter"), "recovered": True,
                                  "val_fraction": meta.get("val_fraction")},
                          n_items=int(meta.get("count", 0)),
                          manifest_sha256=meta["manifest_sha256"])
            log.warning("recorded the export at %s that a killed run left unrecorded", target)
    return removed


def _collect(ctx: ReviewContext, dataset: str
             ) -> tuple[int, str, list[tuple[LabelRecord, str]], int]:
    """The dataset's exportable records with their status (rejected and broken ones dropped)
    and how many of its images have no task yet (still being pseudo-labelled)."""
    with ctx.session(readonly=True) as s:
        ds = require_dataset(s, dataset)
        records = label_records(s, dataset_id=ds.id, include_gold=True)
        unlabelled = count_unlabelled(s, dataset_id=ds.id)
    chosen = [(rec, status) for rec in records if (status := _status(rec)) is not None]
    return ds.id, ds.name, chosen, unlabelled


def export_dataset(
    ctx: ReviewContext,
    dataset: str,
    out_dir: str | Path,
    *,
    user: Actor,
    filter: str = "best",
    push_to_hub: str | None = None,
    base_dir: str | Path | None = None,
    val_fraction: float = 0.1,
    unreviewed_weight: float = 0.5,
    overwrite: bool = False,
    progress: ProgressFn | None = None,
    hub_api: Any | None = None,
) -> ExportReport:
    """Write the training-set export of ``dataset`` to ``out_dir`` (module docstring); admins
    only. ``push_to_hub``: a Hub dataset repo id to upload the folder to afterwards."""
    require_role(user, Role.ADMIN)
    if filter not in FILTERS:
        raise InputError(f"Unknown filter {filter!r}; use one of {', '.join(FILTERS)}.")
    if not 0.0 <= val_fraction < 1.0:
        raise InputError("The validation fraction must be in [0, 1).")
    if push_to_hub is not None and not _REPO_RE.match(push_to_hub):
        raise InputError(f"{push_to_hub!r} is not a Hub repo id; use NAME or OWNER/NAME.")
    target = resolve_out_dir(out_dir, base_dir)
    if target.is_relative_to(blob_root(ctx.settings).resolve()):
        raise InputError("Exports cannot go into the blob store; choose another folder.")
    with export_lock(target):
        recover_target(ctx, target)
        check_target(target, overwrite)
        dataset_id, name, chosen, unlabelled = _collect(ctx, dataset)
        tmp = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex[:8]}")
        tmp.mkdir()
        broken: list[int] = []
        try:
            rows = _write_all(ctx, tmp, chosen, name, filter, val_fraction, unreviewed_weight,
                              progress, broken)
            sha = _write_manifest(tmp, rows, name, filter, val_fraction)
            fsync_tree(tmp)  # every file and name on disk before the rename
            place(tmp, target, overwrite)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        with ctx.session() as s:
            row = record_export(session=s, user=user, dataset_id=dataset_id, path=str(target),
                                filter={"filter": filter, "val_fraction": val_fraction},
                                n_items=len(rows), manifest_sha256=sha)
    report = ExportReport(target, len(rows), sha, row.id, filter, broken=broken,
                          unlabelled=unlabelled)
    if push_to_hub:
        report.pushed = push_export(ctx, target, push_to_hub, name, api=hub_api)
    log.info("export %s: %s", name, report.summary())
    return report


def _write_manifest(tmp: Path, rows: list[dict], name: str, filter: str,
                    val_fraction: float) -> str:
    """``manifest.jsonl``, ``manifest.parquet`` and, last, ``export.json``; returns the
    manifest's sha256."""
    manifest = "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows).encode()
    sha = hashlib.sha256(manifest).hexdigest()
    _write(tmp / "manifest.jsonl", manifest)
    _parquet(rows, tmp / "manifest.parquet")
    meta = {"format": FORMAT, "dataset": name, "filter": filter, "count": len(rows),
            "created_at": datetime.now(timezone.utc).isoformat(), "manifest_sha256": sha,
            "val_fraction": val_fraction}
    _write(tmp / "export.json", json.dumps(meta, indent=2).encode())
    return sha


def _write_all(
    ctx: ReviewContext,
    tmp: Path,
    chosen: list[tuple[LabelRecord, str]],
    name: str,
    filter: str,
    val_fraction: float,
    unreviewed_weight: float,
    progress: ProgressFn | None,
    broken: list[int],
) -> list[dict]:
    """Write the arrays of every record the filter keeps, each file's sha256 checked as it is
    copied; a task with a missing or corrupt file is set aside as broken (its id added to
    ``broken``) and left out. Returns the manifest rows."""
    rows = []
    keep = FILTERS[filter]
    for done, (rec, status) in enumerate(chosen, start=1):
        try:
            with ctx.session(readonly=True) as s:
                label = export_label(ctx.store, s, get_task(s, rec.task.id))
            if keep(status, label.source):
                weight = (1.0 if status == "approved" or label.source == "ground_truth"
                          else unreviewed_weight)
                row = _write_sample(tmp, ctx, rec, label)
                row.update(dataset=name, status=status, weight=float(weight),
                           split=_split(rec.image.sha256, val_fraction))
                rows.append(row)
        except BrokenTaskError as exc:
            log.warning("export: task %s left out: %s", rec.task.id, exc)
            broken.append(rec.task.id)
            with ctx.session() as s:
                mark_broken(session=s, task_id=rec.task.id, reason=str(exc))
        if progress is not None:
            progress(done, len(chosen), rec.image.original_filename)
    return rows


def push_export(ctx: ReviewContext, path: Path, repo_id: str, dataset: str, *,
                api: Any | None = None, private: bool = True) -> str:
    """Upload the export folder to the Hub dataset repo ``repo_id`` (created private if new)."""
    if ctx.settings.hub_offline:
        raise DepthwebError("HF_HUB_OFFLINE is set, so nothing can be pushed to the Hub; "
                            "unset it (and log in with `hf auth login`) to push.")
    from huggingface_hub import HfApi

    api = api or HfApi()
    try:
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        info = api.upload_folder(folder_path=str(path), repo_id=repo_id, repo_type="dataset",
                                 commit_message=f"depthweb export of {dataset}")
    except _hub_errors() as exc:
        raise DepthwebError(f"Pushing to the Hub dataset {repo_id} failed ({exc}); the export "
                            f"is kept at {path}.") from exc
    return str(getattr(info, "commit_url", None) or f"https://huggingface.co/datasets/{repo_id}")


def _hub_errors() -> tuple[type[BaseException], ...]:
    """What a push can raise when the Hub answers with an error or cannot be reached: the
    Hub's HTTP errors, OS errors, and the transport errors of whichever HTTP client
    huggingface_hub uses (httpx2, httpx or requests)."""
    from huggingface_hub.errors import HfHubHTTPError

    errors: list[type[BaseException]] = [HfHubHTTPError, OSError]
    for module, name in (("httpx2", "HTTPError"), ("httpx", "HTTPError"),
                         ("requests", "RequestException")):
        try:
            errors.append(getattr(__import__(module), name))
        except (ImportError, AttributeError):
            continue
    return tuple(errors)
