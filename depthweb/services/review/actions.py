"""Label-changing review actions: a correction, an undo, an admin's pick or merge, and
re-applying today's correction rules to an old task.

Each action reads what it starts from (lock-free), computes the new label outside any
transaction, writes the label's blobs (file first), then commits in *one* write transaction in
which the repository checks the role, the claim and the version once (a stale save writes
nothing). A file found missing or corrupt sets the task aside as broken
(:func:`set_broken`) and the action is refused with a sentence.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from depthweb.errors import InputError
from depthweb.geometry.corrections import RULES_VERSION, LabelMap
from depthweb.services.review.context import ReviewContext
from depthweb.services.review.labels import (
    CorrectionResult,
    Label,
    branch_label,
    clean_payload,
    compute_correction,
    make_recipe,
    new_totals,
    recipe_start,
    replay_branch,
    write_label,
)
from depthweb.services.review.page import label_picture, label_ref
from depthweb.store import BlobRef, StaleRevisionError, get_user, require_role
from depthweb.store.auth import Actor
from depthweb.store.errors import BrokenTaskError, InvalidActionError
from depthweb.store.models import CORRECTION_ACTIONS, Action, Decision, Revision, Role, Task, User
from depthweb.store.repo import (
    add_correction,
    branch_owners,
    get_task,
    label_revisions,
    mark_broken,
    pick_label,
    undo_correction,
)
from depthweb.store.repo._common import check_claim
from depthweb.store.repo.branches import RECIPE_KEY_PREFIX, branch_of, label_key
from depthweb.store.repo.review import REVIEW_ROLES

log = logging.getLogger(__name__)
UserRef = Actor | str | None


def person(session: Session, user: UserRef) -> Actor | None:
    """The acting user: a stored user object as given, or loaded by name (None: nobody)."""
    if user is None or isinstance(user, str):
        return get_user(session, user) if user else None
    return user


def set_broken(ctx: ReviewContext, task_id: int, reason: str) -> None:
    """Set the task aside as broken (its own transaction), logging why."""
    log.warning("task %s set aside as broken: %s", task_id, reason)
    with ctx.session() as s:
        mark_broken(session=s, task_id=task_id, reason=reason)


@contextmanager
def broken_guard(ctx: ReviewContext, task_id: int) -> Iterator[None]:
    """Turn a missing or corrupt file of ``task_id`` into a broken task and a sentence."""
    try:
        yield
    except BrokenTaskError as exc:
        set_broken(ctx, task_id, str(exc))
        raise BrokenTaskError(f"Task {task_id} cannot be shown: {exc} It was set aside for an "
                              "admin; press Next task.") from exc


def _start(s: Session, user: UserRef, task_id: int, expected_version: int) -> tuple[User, Task]:
    who = person(s, user)
    require_role(who, *REVIEW_ROLES)
    task = get_task(s, task_id)
    if task.version != expected_version:
        raise StaleRevisionError(task_id, expected_version, task.version)
    check_claim(task, who)
    return who, task


def save_correction(
    ctx: ReviewContext,
    *,
    task_id: int,
    user: UserRef,
    expected_version: int,
    action: Action | str,
    payload: Mapping[str, Any] | None = None,
    region: np.ndarray | None = None,
) -> CorrectionResult:
    """Compute, write the label (and region) blobs, then append the correction revision.

    ``region``: bool (H, W) for mask / plane_fill / far_fill. Raises ``InputError`` for an
    impossible correction or one over :data:`~depthweb.services.review.labels.LIMITS`,
    ``StaleRevisionError`` when the task moved past ``expected_version``, ``ClaimedError`` when
    someone else holds it; in every case nothing is saved.
    """
    action = Action(action)
    if action not in CORRECTION_ACTIONS:
        raise InputError(f"{action} is not a label correction.")
    payload = clean_payload(payload)
    with broken_guard(ctx, task_id), ctx.session(readonly=True) as s:
        who, task = _start(s, user, task_id, expected_version)
        base, head = branch_label(ctx, s, task, branch_of(task, who))
        totals = new_totals(task_id, base.totals, action, payload)
        new = compute_correction(ctx, task, base, action, payload, region)
        start = recipe_start(ctx.store, task, base, head, action)
        model = task.prediction.model
    result = _commit(ctx, task_id, user, expected_version, action, payload, region, new, totals,
                     base, start)
    remember(ctx, result.label, model)
    return result


def remember(ctx: ReviewContext, label: Label, model: str) -> None:
    """A label just written: its blobs count as verified (this process hashed the bytes it
    wrote) and its page picture is made from the arrays in hand, so the page shown next reads
    no label file."""
    for sha in label.key:
        if sha and not sha.startswith(RECIPE_KEY_PREFIX):
            ctx.cache.mark_verified(sha)
    label_picture(ctx, label_ref(label), model)


def _commit(ctx, task_id, user, expected_version, action, payload, region, new: LabelMap,
            totals, base: Label, start: tuple[BlobRef, BlobRef] | None) -> CorrectionResult:
    """Write the region and the label (or nothing more, for a recipe on ``start``'s files),
    then commit the revision."""
    ref = ctx.store.put_array(np.asarray(region, dtype=bool)) if region is not None else None
    stored = {**payload, "label_kind": new.kind.value, "totals": totals}
    if start is not None:
        stored["recipe"] = make_recipe(base.kind, action, payload)
    refs = start if start is not None else write_label(ctx.store, new)
    with ctx.session() as s:
        rev = add_correction(session=s, task_id=task_id, user=person(s, user),
                             expected_version=expected_version, action=action, payload=stored,
                             blob=ref, store=ctx.store, label=refs, rules_version=RULES_VERSION)
        label = Label(new, "corrected", base.intrinsics, base.prediction_id, task_id, totals,
                      label_key(rev))
        return CorrectionResult(rev.id, rev.task_version, label)


def _in_effect(revs: list[Revision]) -> list[Revision]:
    """The label revisions in effect (undos removed what they undid), oldest first."""
    stack: list[Revision] = []
    for rev in revs:
        if rev.action == Action.UNDO.value:
            undone = (rev.payload or {}).get("undoes")
            stack = [r for r in stack if r.id != undone]
        else:
            stack.append(rev)
    return stack


def _refs(rev: Revision | None) -> tuple[BlobRef, BlobRef] | None:
    if rev is None or rev.label_blob is None or rev.flags_blob is None:
        return None
    return BlobRef.from_row(rev.label_blob), BlobRef.from_row(rev.flags_blob)


def undo_last(ctx: ReviewContext, *, task_id: int, user: UserRef,
              expected_version: int) -> int:
    """Revert the user's own last correction of the task (a new ``undo`` revision that brings
    back the label before it; history kept). Returns the new task version."""
    with ctx.session() as s:
        who, task = _start(s, user, task_id, expected_version)
        stack = _in_effect(label_revisions(s, task_id, branch_of(task, who)))
        top = stack[-1] if stack else None
        if top is None or top.author_id != who.id or top.action not in _CORRECTIONS:
            raise InputError(f"You have no correction of your own to undo on task {task_id} "
                             "(only your latest one, while nobody corrected after it).")
        before = stack[-2] if len(stack) > 1 else None
        if before is not None and before.label_blob is None:
            raise InputError(f"The label before your correction of task {task_id} was made "
                             "before labels were stored; ask an admin to re-apply the rules.")
        payload = {"totals": dict((before.payload or {}).get("totals") or {}) if before else {},
                   "label_kind": (before.payload or {}).get("label_kind", task.prediction.kind)
                   if before else task.prediction.kind}
        if before is not None and (before.payload or {}).get("recipe"):
            payload["recipe"] = before.payload["recipe"]  # the same label, on the same files
        rev = undo_correction(session=s, task_id=task_id, user=who,
                              expected_version=expected_version, undoes=top.id,
                              label=_refs(before), payload=payload)
        return rev.task_version


_CORRECTIONS = frozenset(a.value for a in CORRECTION_ACTIONS)


def _admin_pick(ctx: ReviewContext, task_id: int, user: UserRef, expected_version: int,
                make: Callable[[Session, Task], tuple[LabelMap | None, dict]],
                decision: str) -> int:
    """Read, ``make`` the shared label (None: the teacher's), write, then commit a pick."""
    with broken_guard(ctx, task_id), ctx.session(readonly=True) as s:
        who = person(s, user)
        require_role(who, Role.ADMIN)
        task = get_task(s, task_id)
        if task.version != expected_version:
            raise StaleRevisionError(task_id, expected_version, task.version)
        lmap, payload = make(s, task)
    refs = write_label(ctx.store, lmap) if lmap is not None else None
    payload = {**payload, "label_kind": (lmap.kind.value if lmap is not None else None)}
    with ctx.session() as s:
        rev = pick_label(session=s, task_id=task_id, user=person(s, user),
                         expected_version=expected_version, label=refs, payload=payload,
                         store=ctx.store, decision=Decision(decision),
                         rules_version=RULES_VERSION)
        return rev.task_version


def pick_branch(ctx: ReviewContext, *, task_id: int, user: UserRef, expected_version: int,
                reviewer: str, decision: str = "approve") -> int:
    """An admin makes one reviewer's branch the task's label and decides the task."""
    def make(s: Session, task: Task) -> tuple[LabelMap | None, dict]:
        owner = get_user(s, reviewer)
        if owner is None or owner.id not in branch_owners(s, task.id):
            raise InputError(f"{reviewer!r} has no branch on task {task.id}; pick one of the "
                             "reviewers listed for it.")
        label, head = branch_label(ctx, s, task, owner.id)
        totals = label.totals
        return (label.map if head is not None else None), {"branch": reviewer, "totals": totals}

    return _admin_pick(ctx, task_id, user, expected_version, make, decision)


def merge_branches(ctx: ReviewContext, *, task_id: int, user: UserRef, expected_version: int,
                   decision: str = "approve") -> int:
    """An admin merges every branch of the task: per-pixel median of the depths (same kind
    needed), a pixel ignored or far where most branches say so."""
    def make(s: Session, task: Task) -> tuple[LabelMap | None, dict]:
        owners = branch_owners(s, task.id)
        if not owners:
            raise InputError(f"Task {task.id} has no reviewer branches to merge.")
        labels = [branch_label(ctx, s, task, o)[0] for o in owners]
        kinds = {lab.kind for lab in labels}
        if len(kinds) > 1:
            raise InputError("The branches are in different units (some were anchored to "
                             "metres); pick one branch instead of merging.")
        depth = np.nanmedian(np.stack([lab.depth for lab in labels]), axis=0)
        votes = len(labels) / 2.0
        ignore = np.sum([lab.ignore_mask for lab in labels], axis=0) > votes
        far = np.sum([lab.far_mask for lab in labels], axis=0) > votes
        merged = LabelMap(depth.astype(np.float32), kinds.pop(), ignore, far & ~ignore)
        return merged, {"merged": len(labels), "totals": {"corrections": 1}}

    return _admin_pick(ctx, task_id, user, expected_version, make, decision)


def reapply_rules(ctx: ReviewContext, *, task_id: int, user: UserRef,
                  expected_version: int) -> int:
    """An admin recomputes the task's shared label from its corrections with today's rules
    (:data:`RULES_VERSION`), recorded as a pick; old labels otherwise keep their rules."""
    def make(s: Session, task: Task) -> tuple[LabelMap | None, dict]:
        if not label_revisions(s, task.id, None):
            raise InvalidActionError(f"Task {task.id} has no corrections to re-apply.")
        label = replay_branch(ctx, s, task, None, rules_version=RULES_VERSION)
        return label.map, {"reapplied_rules": RULES_VERSION, "totals": label.totals}

    return _admin_pick(ctx, task_id, user, expected_version, make, "approve")
