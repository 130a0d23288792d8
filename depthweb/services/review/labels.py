"""The label of a review task: stored per revision, computed once, read in one step.

Every label revision (a correction, an undo, an admin's pick) keeps the label it produced as two
blobs (depth float32 (H, W) in its kind's space, flags uint8 (H, W): bit 0 ignore, bit 1 far),
so opening a task reads one label whatever the length of its history. A correction is computed
from the label it starts from (:func:`depthweb.geometry.corrections.apply_correction`, with the
rules version of the day, :data:`RULES_VERSION`) *before* anything is written: an impossible
correction is refused with a sentence and nothing is saved. Revisions made before labels were
stored are replayed once with the rules each was made with (:func:`replay_branch`).

An anchors correction whose starting label is kept in files of its own (the teacher's
prediction, or a label written by an earlier correction) is kept as a *recipe* instead of a new
label file: its revision points at the starting label's files and stores the correction
(``payload["recipe"]``); reading it re-applies that one correction (:func:`apply_recipe`,
tens of milliseconds) rather than writing 27 MB per save on a 7-megapixel photo. A recipe
always starts from a label file, never from another recipe, so a read is one file and at most
one correction, whatever the history's length.

A correction's (or undo's) label file can be computed again from the branch's history, which
the database keeps (the teacher's prediction, the corrections and their painted regions): when
one is missing or fails its checksum, the label is replayed and the file written again
(:func:`recover_label`) instead of setting the task aside. An admin's pick (a chosen or merged
label) is data of its own: a lost one sets the task aside like a lost photo.

Costs are bounded (:data:`LIMITS`): a save holds a limited number of pairs or anchors, and a
task (one branch) a limited number of corrections; over a limit the save is refused with one
sentence saying which limit.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from depthweb.errors import InputError
from depthweb.geometry.corrections import RULES_VERSION, LabelMap, apply_correction
from depthweb.services.review.context import ReviewContext
from depthweb.store import BlobRef, BlobStore
from depthweb.store.errors import BrokenTaskError
from depthweb.store.models import (
    CORRECTION_ACTIONS,
    Action,
    Blob,
    Image,
    Prediction,
    Revision,
    Task,
)
from depthweb.store.repo import export_head, get_task, label_head, label_revisions
from depthweb.store.repo.branches import label_key
from depthweb.types import DepthKind, Intrinsics, IntrinsicsSource

logger = logging.getLogger(__name__)

GROUND_TRUTH_MODEL = "ground_truth"
"""Predictions stored under this model name are ground truth (``source: ground_truth``)."""

LIMITS: dict[str, int] = {
    "pairs_per_save": 50,
    "anchors_per_save": 20,
    "pairs_per_task": 500,
    "anchors_per_task": 100,
    "regions_per_task": 60,
    "corrections_per_task": 200,
}
"""Most corrections per save and per task (per reviewer's branch on crowd tasks)."""

_FLAG_IGNORE, _FLAG_FAR = 1, 2

RECIPE_ACTIONS = frozenset({Action.ANCHORS.value})
"""Corrections kept as a recipe on their starting label's files (module docs): a correction
that needs no painted region and no photo, and changes every pixel (so a new file would be as
large as the label)."""


@dataclass(frozen=True)
class Label:
    """A task's label: ``map`` (depth float32 (H, W) in ``kind`` space, NaN invalid; ignore and
    far bool (H, W)), its ``source`` (ground_truth | corrected | pseudo), the teacher's
    ``intrinsics`` (pixels of the label), and ``totals`` (corrections, pairs, anchors, regions
    in its history)."""

    map: LabelMap
    source: str
    intrinsics: Intrinsics
    prediction_id: int
    task_id: int | None = None
    totals: dict[str, int] = field(default_factory=dict)
    key: tuple[str | None, str | None] = (None, None)

    @property
    def depth(self) -> np.ndarray:
        return self.map.depth

    @property
    def kind(self) -> DepthKind:
        return self.map.kind

    @property
    def ignore_mask(self) -> np.ndarray:
        return self.map.ignore

    @property
    def far_mask(self) -> np.ndarray:
        return self.map.far

    @property
    def label_map(self) -> LabelMap:
        return self.map

    @property
    def n_corrections(self) -> int:
        return int(self.totals.get("corrections", 0))

    def equals(self, other: Label) -> bool:
        """Same arrays (NaN == NaN), kind and source."""
        return self.source == other.source and self.map.equals(other.map)


@dataclass(frozen=True)
class CorrectionResult:
    """A saved correction: its revision, the task version it produced, and the new label."""

    revision_id: int
    task_version: int
    label: Label


def prediction_intrinsics(pred: Prediction) -> Intrinsics:
    return Intrinsics(pred.fx, pred.fy, pred.cx, pred.cy,
                      IntrinsicsSource(pred.intrinsics_source), pred.intrinsics_note or "")


def label_source(pred: Prediction, n_corrections: int) -> str:
    """corrected | ground_truth | pseudo."""
    if n_corrections:
        return "corrected"
    return "ground_truth" if pred.model == GROUND_TRUTH_MODEL else "pseudo"


# ------------------------------------------------------------------------------ blobs
def read_blob(ctx_or_store: ReviewContext | BlobStore, row: Blob, what: str) -> bytes:
    """The bytes of a blob, its sha256 checked (once per process with a context); a missing
    or corrupt file raises :class:`BrokenTaskError` naming ``what``."""
    store = ctx_or_store.store if isinstance(ctx_or_store, ReviewContext) else ctx_or_store
    cache = ctx_or_store.cache if isinstance(ctx_or_store, ReviewContext) else None
    ref = BlobRef.from_row(row)
    try:
        data = store.get_bytes(ref)
    except OSError as exc:
        raise BrokenTaskError(f"The {what} file ({ref.sha256[:12]}) is missing.") from exc
    if cache is None or not cache.is_verified(ref.sha256):
        if hashlib.sha256(data).hexdigest() != ref.sha256:
            raise BrokenTaskError(f"The {what} file ({ref.sha256[:12]}) fails its checksum.")
        if cache is not None:
            cache.mark_verified(ref.sha256)
    return data


def read_array(ctx_or_store: ReviewContext | BlobStore, row: Blob, what: str, *,
               readonly: bool = False) -> np.ndarray:
    """An array blob (checked as :func:`read_blob`; shape and dtype as recorded). ``readonly``:
    a read-only view of the file's bytes, without the copy np.load makes (for pictures)."""
    import io

    data = read_blob(ctx_or_store, row, what)
    try:
        arr = _npy_view(data) if readonly else None
        if arr is None:
            arr = np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as exc:
        raise BrokenTaskError(f"The {what} file ({row.sha256[:12]}) is not an array.") from exc
    if row.shape is not None and tuple(arr.shape) != tuple(int(s) for s in row.shape):
        raise BrokenTaskError(f"The {what} file ({row.sha256[:12]}) has the wrong shape.")
    return arr


def _npy_view(data: bytes) -> np.ndarray | None:
    """The array in ``.npy`` bytes as a read-only view (None: a layout np.load must read)."""
    import io

    buf = io.BytesIO(data)
    version = np.lib.format.read_magic(buf)
    if version != (1, 0):
        return None
    shape, fortran, dtype = np.lib.format.read_array_header_1_0(buf)
    if dtype.hasobject:
        raise ValueError("object arrays are not stored")
    count = int(np.prod(shape, dtype=np.int64))
    arr = np.frombuffer(data, dtype=dtype, count=count, offset=buf.tell())
    return arr.reshape(shape, order="F" if fortran else "C")


def teacher_map(store: ReviewContext | BlobStore, pred: Prediction) -> LabelMap:
    """The teacher prediction as a label (float32 (H, W) in its kind's space): a read-only
    view of the file's bytes, not copied (27 MB on a 7-megapixel photo)."""
    return LabelMap.from_prediction(
        read_array(store, pred.depth_blob, "teacher prediction", readonly=True), pred.kind,
        copy=False)


def _label_arrays(label: LabelMap) -> tuple[np.ndarray, np.ndarray]:
    flags = label.ignore.astype(np.uint8) * _FLAG_IGNORE | label.far.astype(np.uint8) * _FLAG_FAR
    return np.ascontiguousarray(label.depth, dtype=np.float32), flags


def write_label(store: BlobStore, label: LabelMap, *, repair: bool = False
                ) -> tuple[BlobRef, BlobRef]:
    """Write a label's depth and flags blobs (content-addressed: an unchanged depth map is
    not written twice; ``repair``: overwrite damaged files of the same names)."""
    depth, flags = _label_arrays(label)
    return store.put_array(depth, replace=repair), store.put_array(flags, replace=repair)


def is_derived(rev: Revision) -> bool:
    """Whether a revision's label files can be computed again from the branch's history (a
    correction or an undo: :func:`replay_branch`) rather than being data of their own."""
    return rev.action in _CORRECTIONS or rev.action == Action.UNDO.value


def recover_label(ctx: ReviewContext | BlobStore, session: Session, task: Task,
                  branch_id: int | None, head: Revision) -> Label:
    """The label of a branch whose head's label file is missing or damaged: replayed from the
    history, and the file written again from the replayed label whose checksum it has (the
    head's own label, or for a recipe the label it starts from); then later reads are one
    file again. Raises BrokenTaskError when the head is not derived or the replay needs a file
    that is broken."""
    if not is_derived(head):
        raise BrokenTaskError(f"The label of revision {head.id} is missing or damaged.")
    label, maps = _replay(ctx, session, task, branch_id)
    want = (head.label_blob_sha256, head.flags_blob_sha256)
    store = ctx.store if isinstance(ctx, ReviewContext) else ctx
    for lmap in reversed(maps):
        if tuple(BlobStore.array_sha256(a) for a in _label_arrays(lmap)) == want:
            write_label(store, lmap, repair=True)
            break
    else:
        logger.warning("task %s: no replayed label has the stored file's checksum; it is used "
                       "without being stored", task.id)
        return label
    if isinstance(ctx, ReviewContext):
        for sha in want:
            ctx.cache.mark_verified(sha)
    logger.warning("task %s: label file of revision %s was missing or damaged; replayed and "
                   "written again", task.id, head.id)
    return Label(label.map, label.source, label.intrinsics, label.prediction_id, task.id,
                 dict((head.payload or {}).get("totals") or {}), label_key(head))


def _read_map(ctx: ReviewContext | BlobStore, depth_row: Blob, flags_row: Blob,
              kind: DepthKind) -> LabelMap:
    depth = read_array(ctx, depth_row, "label")
    flags = read_array(ctx, flags_row, "label flags")
    return LabelMap(depth.astype(np.float32, copy=False), kind, (flags & _FLAG_IGNORE) > 0,
                    (flags & _FLAG_FAR) > 0)


def make_recipe(start_kind: DepthKind, action: Action, payload: Mapping[str, Any]
                ) -> dict[str, Any]:
    """What a recipe revision stores: the starting label's kind and the correction, with the
    rules version of the day (everything :func:`apply_recipe` needs besides the files)."""
    return {"start_kind": DepthKind(start_kind).value, "action": action.value,
            "payload": dict(payload), "rules_version": RULES_VERSION}


def apply_recipe(start: LabelMap, recipe: Mapping[str, Any]) -> LabelMap:
    """The label a recipe gives: its correction applied to its starting label, with the rules
    it was made with (the same computation as when it was saved, so the same bytes)."""
    action = str(recipe.get("action"))
    if action not in RECIPE_ACTIONS:
        raise BrokenTaskError(f"A stored label recipe names {action!r}, which is not kept as a "
                              "recipe.")
    return apply_correction(start, action, recipe.get("payload") or {}, None, None,
                            rules_version=int(recipe.get("rules_version") or 1))


def _stored_map(ctx: ReviewContext | BlobStore, rev: Revision) -> LabelMap:
    payload = rev.payload or {}
    recipe = payload.get("recipe")
    if recipe:
        start = _read_map(ctx, rev.label_blob, rev.flags_blob, DepthKind(recipe["start_kind"]))
        return apply_recipe(start, recipe)
    kind = DepthKind(payload.get("label_kind", DepthKind.RELATIVE_DISPARITY.value))
    return _read_map(ctx, rev.label_blob, rev.flags_blob, kind)


def is_stored(rev: Revision) -> bool:
    """Whether a label revision carries its label (None blobs on an undo = the teacher's)."""
    return rev.label_blob_sha256 is not None or rev.action == Action.UNDO.value


def _region(ctx: ReviewContext | BlobStore, rev: Revision) -> np.ndarray | None:
    if rev.blob is None:
        return None
    return read_array(ctx, rev.blob, "painted region").astype(bool)


# ------------------------------------------------------------------------------ reading
def _label(ctx, task: Task, lmap: LabelMap, rev: Revision | None) -> Label:
    pred = task.prediction
    totals = dict((rev.payload or {}).get("totals") or {}) if rev is not None else {}
    return Label(lmap, label_source(pred, int(totals.get("corrections", 0))),
                 prediction_intrinsics(pred), pred.id, task.id, totals, label_key(rev))


def branch_label(ctx: ReviewContext | BlobStore, session: Session, task: Task,
                 branch_id: int | None) -> tuple[Label, Revision | None]:
    """The current label of one branch of ``task`` and its head revision (None: teacher).
    Reads one stored label; a branch with revisions from before labels were stored is
    replayed (:func:`replay_branch`)."""
    head = label_head(session, task.id, branch_id)
    if head is None:
        return _label(ctx, task, teacher_map(ctx, task.prediction), None), None
    if not is_stored(head):
        return replay_branch(ctx, session, task, branch_id), head
    if head.label_blob is None:
        return _label(ctx, task, teacher_map(ctx, task.prediction), head), head
    try:
        return _label(ctx, task, _stored_map(ctx, head), head), head
    except BrokenTaskError:
        return recover_label(ctx, session, task, branch_id, head), head


def guide_image(ctx: ReviewContext | BlobStore, image: Image, shape: tuple[int, int]
                ) -> np.ndarray:
    """The photo at label size (H, W, 3) float32 in [0, 1] (the edges local pairs follow)."""
    import cv2

    rgb = image_rgb(ctx, image)
    h, w = shape
    if rgb.shape[:2] != (h, w):
        rgb = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)
    return rgb.astype(np.float32) / 255.0


def replay_branch(ctx: ReviewContext | BlobStore, session: Session, task: Task,
                  branch_id: int | None, *, rules_version: int | None = None) -> Label:
    """Recompute a branch's label from the teacher prediction and its label revisions, each
    correction with the rules version it was made with (or all with ``rules_version``: an
    admin re-applying new rules); an undo pops, a pick reads its stored label."""
    return _replay(ctx, session, task, branch_id, rules_version=rules_version)[0]


def _replay(ctx: ReviewContext | BlobStore, session: Session, task: Task,
            branch_id: int | None, *, rules_version: int | None = None
            ) -> tuple[Label, list[LabelMap]]:
    """:func:`replay_branch`, and every label met on the way (the teacher's first)."""
    pred = task.prediction
    intr = prediction_intrinsics(pred)
    base = teacher_map(ctx, pred)
    guide = None
    stack: list[tuple[Revision, LabelMap]] = []
    met = [base]
    for rev in label_revisions(session, task.id, branch_id):
        current = stack[-1][1] if stack else base
        if rev.action == Action.UNDO.value:
            undone = (rev.payload or {}).get("undoes")
            stack = [e for e in stack if e[0].id != undone]
            continue
        if rev.action == Action.PICK.value or rev.action not in _CORRECTIONS:
            if rules_version is None:
                stack.append((rev, _stored_map(ctx, rev) if rev.label_blob else base))
                met.append(stack[-1][1])
            continue  # re-applying rules: replay the corrections, not earlier picks
        if rev.action == Action.ORDINAL.value and guide is None:
            guide = guide_image(ctx, task.image, base.shape)
        new = apply_correction(current, rev.action, rev.payload, _region(ctx, rev), intr,
                               guide=guide,
                               rules_version=rules_version or int(rev.rules_version or 1))
        stack.append((rev, new))
        met.append(new)
    lmap = stack[-1][1] if stack else base
    n = sum(1 for r, _ in stack if r.action in _CORRECTIONS)
    label = _label(ctx, task, lmap, None)
    last = stack[-1][0].id if stack else None
    key = (None, None) if last is None else (f"replay-{task.id}-{branch_id}-{rules_version}",
                                             str(last))
    return Label(label.map, label_source(pred, n), label.intrinsics, pred.id, task.id,
                 {"corrections": n}, key), met


_CORRECTIONS = frozenset(a.value for a in CORRECTION_ACTIONS)


def export_label(ctx: ReviewContext | BlobStore, session: Session, task: Task) -> Label:
    """The label an export writes: the shared label, or on a crowd task without one the
    branch its approvers agreed on (files re-verified when ``ctx`` is a bare store)."""
    head = export_head(session, task)
    if head is None:
        return _label(ctx, task, teacher_map(ctx, task.prediction), None)
    if not is_stored(head):
        return replay_branch(ctx, session, task, head.branch_id)
    if head.label_blob is None:
        return _label(ctx, task, teacher_map(ctx, task.prediction), head)
    try:
        return _label(ctx, task, _stored_map(ctx, head), head)
    except BrokenTaskError:
        return recover_label(ctx, session, task, head.branch_id, head)


def current_label(session: Session, task_id: int, *, store: ReviewContext | BlobStore,
                  branch_id: int | None = None) -> Label:
    """The task's label (the shared one unless ``branch_id``)."""
    return branch_label(store, session, get_task(session, task_id), branch_id)[0]


def image_rgb(ctx: ReviewContext | BlobStore, image: Image,
              preview_side: int | None = None) -> np.ndarray:
    """The stored image as RGB uint8 (H, W, 3) (checked as :func:`read_blob`); with
    ``preview_side``, for display: possibly decoded at reduced scale, its longer side still at
    least ``preview_side`` (:func:`depthweb.imaging.load_image`)."""
    from depthweb.imaging import load_image

    data = read_blob(ctx, image.blob, "photo")
    # Stored images were checked when imported; the aspect limit may be newer than the image.
    return load_image(data, name=image.original_filename or "image",
                      max_pixels=max(image.width * image.height, 1), max_aspect=None,
                      preview_side=preview_side).rgb


# ------------------------------------------------------------------------------ saving
def clean_payload(payload: Mapping[str, Any] | None) -> dict[str, Any]:
    """The payload as it will be stored (JSON round trip), so the label computed now is the
    label recomputed later."""
    try:
        return json.loads(json.dumps(dict(payload or {}), default=_json_number))
    except (TypeError, ValueError) as exc:
        raise InputError(f"The correction's details cannot be saved: {exc}.") from exc


def _json_number(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def new_totals(task_id: int, before: Mapping[str, int], action: Action,
               payload: Mapping[str, Any]) -> dict[str, int]:
    """The branch's totals after this correction; refuses (InputError, one sentence) a save
    or a task over :data:`LIMITS`."""
    n_pairs = len(payload.get("pairs") or []) if action is Action.ORDINAL else 0
    n_anchors = len(payload.get("anchors") or []) if action is Action.ANCHORS else 0
    for n, what, key in ((n_pairs, "ordinal pairs", "pairs"),
                         (n_anchors, "scale anchors", "anchors")):
        if n > LIMITS[f"{key}_per_save"]:
            raise InputError(f"A save holds at most {LIMITS[f'{key}_per_save']} {what} (this "
                             f"one has {n}); save them in smaller groups.")
    out = {k: int(before.get(k, 0)) for k in ("corrections", "pairs", "anchors", "regions")}
    out["corrections"] += 1
    out["pairs"] += n_pairs
    out["anchors"] += n_anchors
    out["regions"] += int(action in (Action.MASK, Action.PLANE_FILL, Action.FAR_FILL))
    for key, what in (("pairs", "ordinal pairs"), ("anchors", "scale anchors"),
                      ("regions", "painted regions"), ("corrections", "corrections")):
        limit = LIMITS[f"{key}_per_task"]
        if out[key] > limit:
            raise InputError(f"Task {task_id} already has {int(before.get(key, 0))} {what}; a "
                             f"task holds at most {limit}, so approve or reject it as it is "
                             "(or undo a correction).")
    return out


def recipe_start(store: BlobStore, task: Task, base: Label, head: Revision | None,
                 action: Action) -> tuple[BlobRef, BlobRef] | None:
    """The (depth, flags) files a correction of ``base`` can be kept on as a recipe (module
    docs), or None when it must be written as a label of its own: another action, a starting
    label that is itself a recipe, or one not read from its files (replayed). The teacher's
    label gets an all-zero flags file (one per label size, shared by every task)."""
    if action.value not in RECIPE_ACTIONS:
        return None
    if head is None or head.label_blob is None:
        if base.key != (None, None):
            return None
        pred = task.prediction
        zeros = store.put_array(np.zeros(base.map.shape, dtype=np.uint8))
        return BlobRef.from_row(pred.depth_blob), zeros
    if (head.payload or {}).get("recipe") or base.key != label_key(head):
        return None
    return BlobRef.from_row(head.label_blob), BlobRef.from_row(head.flags_blob)


def compute_correction(ctx: ReviewContext | BlobStore, task: Task, base: Label,
                       action: Action, payload: Mapping[str, Any],
                       region: np.ndarray | None) -> LabelMap:
    """The label after one correction of ``base`` under today's rules (nothing saved)."""
    guide = None
    if action is Action.ORDINAL and payload.get("mode", "local") == "local":
        guide = guide_image(ctx, task.image, base.map.shape)
    return apply_correction(base.map, action.value, payload, region, base.intrinsics,
                            guide=guide, rules_version=RULES_VERSION)
