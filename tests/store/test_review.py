"""Review actions: version-guarded saves, append-only revisions, roles checked server-side."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import func, select

from depthweb.errors import InputError
from depthweb.store import (
    BlobRef,
    InvalidActionError,
    PermissionDeniedError,
    StaleRevisionError,
    session_scope,
    update_user,
)
from depthweb.store.auth import SYSTEM
from depthweb.store.models import Blob, Review, Revision, Task
from depthweb.store.repo import (
    add_correction,
    add_note,
    adjudicate,
    approve_task,
    claim_task,
    current_corrections,
    get_task,
    reject_task,
    set_gold,
    task_history,
)


def act(engine, fn, **kw):
    with session_scope(engine) as s:
        return fn(session=s, **kw)


def task_state(engine, task_id):
    with session_scope(engine, readonly=True) as s:
        t = get_task(s, task_id)
        n_rev = s.scalar(select(func.count(Revision.id)).where(Revision.task_id == task_id))
        n_reviews = s.scalar(select(func.count(Review.id)).where(Review.task_id == task_id))
        return t.version, t.status, n_rev, n_reviews


def mask_blob(world, seed=0) -> BlobRef:
    rng = np.random.default_rng(seed)
    return world.store.put_array(rng.random((6, 8)) > 0.5)


# One entry per mutating action: a callable (world, task_id, user, version) -> None.
ACTIONS = {
    "approve": lambda w, t, u, v: act(
        w.engine, approve_task, task_id=t, user=u, expected_version=v
    ),
    "reject": lambda w, t, u, v: act(
        w.engine, reject_task, task_id=t, user=u, expected_version=v, reasons=["sky"]
    ),
    "mask": lambda w, t, u, v: act(
        w.engine,
        add_correction,
        task_id=t,
        user=u,
        expected_version=v,
        action="mask",
        blob=mask_blob(w, 7),
        store=w.store,
    ),
    "anchors": lambda w, t, u, v: act(
        w.engine,
        add_correction,
        task_id=t,
        user=u,
        expected_version=v,
        action="anchors",
        payload={"anchors": [{"x": 1, "y": 2, "depth": 3.5}]},
    ),
    "note": lambda w, t, u, v: act(
        w.engine, add_note, task_id=t, user=u, expected_version=v, text="glass door on the left"
    ),
    "claim": lambda w, t, u, v: act(w.engine, claim_task, task_id=t, user=u, expected_version=v),
    "adjudicate": lambda w, t, u, v: act(
        w.engine, adjudicate, task_id=t, user=u, expected_version=v, decision="approve"
    ),
}


def test_approve_appends_a_revision_and_decides_a_single_review_task(make_world):
    w = make_world(n_tasks=2)
    tid = w.task_ids[0]
    claimed = act(w.engine, claim_task, task_id=tid, user=w.user("rev"), expected_version=0)
    # a claim is not a change of the label: the claimer's open page (version 0) stays current
    assert (claimed.version, claimed.status, claimed.assignee_id) == (
        0,
        "in_review",
        w.user("rev").id,
    )
    done = act(w.engine, approve_task, task_id=tid, user=w.user("rev"), expected_version=0)
    assert (done.version, done.status, done.assignee_id) == (1, "approved", None)
    with session_scope(w.engine, readonly=True) as s:
        (rev,) = task_history(s, tid)
        assert (rev.action, rev.parent_id, rev.task_version, rev.author.name) == (
            "approve",
            None,
            1,
            "rev",
        )
        review = s.scalars(select(Review)).one()
        assert (review.decision, review.active, review.revision_id) == ("approve", True, rev.id)
    assert task_state(w.engine, w.task_ids[1]) == (0, "new", 0, 0)  # other task untouched


@pytest.mark.parametrize("action", sorted(ACTIONS))
def test_stale_saves_are_refused_and_write_nothing(make_world, action):
    w = make_world(n_tasks=1)
    tid = w.task_ids[0]
    ACTIONS["note"](w, tid, w.user("rev"), 0)  # someone else saved first: version 0 -> 1
    before = task_state(w.engine, tid)
    user = w.user("admin") if action == "adjudicate" else w.user("rev")
    with pytest.raises(StaleRevisionError, match="reload the task") as err:
        ACTIONS[action](w, tid, user, 0)
    assert (err.value.task_id, err.value.expected_version, err.value.current_version) == (tid, 0, 1)
    assert "version 0" in str(err.value) and "version 1" in str(err.value)
    assert task_state(w.engine, tid) == before
    with session_scope(w.engine, readonly=True) as s:
        assert s.scalar(select(func.count()).select_from(Blob)) == 2  # photo + teacher depth


@pytest.mark.parametrize("action", sorted(ACTIONS))
def test_viewers_cannot_save_anything(make_world, action):
    w = make_world(n_tasks=1)
    tid = w.task_ids[0]
    with pytest.raises(PermissionDeniedError, match="viewer role"):
        ACTIONS[action](w, tid, w.user("view"), 0)
    with pytest.raises(PermissionDeniedError):  # the CLI's system actor authors no revisions
        ACTIONS[action](w, tid, SYSTEM, 0)
    assert task_state(w.engine, tid) == (0, "new", 0, 0)


def test_disabled_reviewers_and_admin_only_actions(make_world):
    w = make_world(n_tasks=1)
    tid = w.task_ids[0]
    with pytest.raises(PermissionDeniedError, match="needs admin"):
        ACTIONS["adjudicate"](w, tid, w.user("rev"), 0)
    with pytest.raises(PermissionDeniedError):
        act(
            w.engine,
            set_gold,
            task_id=tid,
            user=w.user("rev"),
            expected_version=0,
            gold_decision="approve",
        )
    with session_scope(w.engine) as s:
        rev = update_user(session=s, actor=SYSTEM, name="rev", active=False)
    with pytest.raises(PermissionDeniedError, match="disabled"):
        ACTIONS["note"](w, tid, rev, 0)
    assert task_state(w.engine, tid) == (0, "new", 0, 0)


def test_corrections_come_back_in_order_with_their_masks(make_world):
    w = make_world(n_tasks=1)
    tid, rev = w.task_ids[0], w.user("rev")
    masks = [mask_blob(w, seed) for seed in (1, 2)]
    steps = [
        dict(action="mask", blob=masks[0], store=w.store, payload={"label": "sky"}),
        dict(action="anchors", payload={"anchors": [{"x": 3, "y": 4, "depth": 2.0}]}),
        dict(action="ordinal", payload={"pairs": [{"a": [0, 0], "b": [5, 5], "closer": "a"}]}),
        dict(action="plane_fill", blob=masks[1], store=w.store),
        dict(action="far_fill", blob=masks[0], store=w.store),
    ]
    for i, step in enumerate(steps):
        act(w.engine, add_correction, task_id=tid, user=rev, expected_version=2 * i, **step)
        act(w.engine, add_note, task_id=tid, user=rev, expected_version=2 * i + 1, text=f"n{i}")
    with session_scope(w.engine, readonly=True) as s:
        history = task_history(s, tid)
        assert [r.task_version for r in history] == list(range(1, 11))
        assert [r.parent_id for r in history] == [None] + [r.id for r in history[:-1]]
        fixes = current_corrections(s, tid)
        assert [r.action for r in fixes] == ["mask", "anchors", "ordinal", "plane_fill", "far_fill"]
        assert fixes[1].payload == steps[1]["payload"]
        assert fixes[2].payload == steps[2]["payload"]
        got = w.store.get_array(BlobRef.from_row(fixes[3].blob))
    np.testing.assert_array_equal(got, w.store.get_array(masks[1]))
    assert task_state(w.engine, tid)[:2] == (10, "in_review")


def test_correction_validation(make_world):
    w = make_world(n_tasks=1)
    tid, rev = w.task_ids[0], w.user("rev")
    bad = [
        dict(action="mask"),  # no region
        dict(action="mask", blob=w.store.put_array(np.zeros(5, bool)), store=w.store),  # not 2-D
        dict(action="anchors", payload={"anchors": []}),
        dict(action="ordinal", payload={}),
        dict(action="approve"),  # not a correction
    ]
    for kw in bad:
        with pytest.raises(InputError):
            act(w.engine, add_correction, task_id=tid, user=rev, expected_version=0, **kw)
    with pytest.raises(InputError, match="reason"):
        act(w.engine, reject_task, task_id=tid, user=rev, expected_version=0, reasons=[" "])
    with pytest.raises(InputError, match="empty"):
        act(w.engine, add_note, task_id=tid, user=rev, expected_version=0, text="  ")
    assert task_state(w.engine, tid) == (0, "new", 0, 0)


def test_decided_tasks_are_locked_for_reviewers_and_reopened_by_admins(make_world):
    w = make_world(n_tasks=1)
    tid = w.task_ids[0]
    act(
        w.engine,
        reject_task,
        task_id=tid,
        user=w.user("rev"),
        expected_version=0,
        reasons=["wrong scale"],
    )
    for name in ("approve", "anchors"):
        with pytest.raises(InvalidActionError, match="rejected"):
            ACTIONS[name](w, tid, w.user("rev"), 1)
    ACTIONS["anchors"](w, tid, w.user("admin"), 1)  # an admin's correction reopens it
    assert task_state(w.engine, tid) == (2, "in_review", 2, 1)
    with session_scope(w.engine, readonly=True) as s:
        assert not s.scalars(select(Review)).one().active  # the old review no longer counts
    approved = act(w.engine, approve_task, task_id=tid, user=w.user("rev"), expected_version=2)
    assert approved.status == "approved"


def test_a_reviewer_cannot_review_the_same_label_twice(make_world):
    w = make_world(n_tasks=1, required_reviews=2)
    tid, rev = w.task_ids[0], w.user("rev")
    act(w.engine, approve_task, task_id=tid, user=rev, expected_version=0)
    with pytest.raises(InvalidActionError, match="already reviewed"):
        act(w.engine, reject_task, task_id=tid, user=rev, expected_version=1, reasons=["x"])
    assert task_state(w.engine, tid) == (1, "in_review", 1, 1)


def test_tasks_table_has_no_partial_writes_after_failed_saves(make_world):
    """A failure after the version bump (here: an invalid decision row) rolls back the bump."""
    w = make_world(n_tasks=1)
    tid = w.task_ids[0]
    with pytest.raises(ValueError), session_scope(w.engine) as s:
        approve_task(session=s, task_id=tid, user=w.user("rev"), expected_version=0)
        s.get(Task, tid)
        raise ValueError("handler failed after saving")
    assert task_state(w.engine, tid) == (0, "new", 0, 0)


@pytest.mark.parametrize("action", ["note", "anchors", "approve"])
def test_a_user_object_held_from_an_earlier_session_is_checked_as_stored(make_world, action):
    """Saves check the saver's role and active flag as the database has them in the save's
    transaction, so a caller may keep the user object between requests."""
    w = make_world(n_tasks=1)
    tid, held = w.task_ids[0], w.user("rev")  # loaded when the world was made
    with session_scope(w.engine) as s:
        update_user(session=s, actor=SYSTEM, name="rev", role="viewer")
    with pytest.raises(PermissionDeniedError, match="viewer role"):
        ACTIONS[action](w, tid, held, 0)
    with session_scope(w.engine) as s:
        update_user(session=s, actor=SYSTEM, name="rev", role="reviewer", active=False)
    with pytest.raises(PermissionDeniedError, match="disabled"):
        ACTIONS[action](w, tid, held, 0)
    assert task_state(w.engine, tid) == (0, "new", 0, 0)
    with session_scope(w.engine) as s:  # promoted: the admin's rights apply at once
        update_user(session=s, actor=SYSTEM, name="rev", role="admin", active=True)
    act(w.engine, claim_task, task_id=tid, user=w.user("admin"), expected_version=0)
    ACTIONS[action](w, tid, held, 0)  # admins may save on a task someone else claimed
    assert task_state(w.engine, tid)[0] == 1


def test_the_version_bump_refuses_a_task_claimed_after_the_checks(make_world):
    """The guarded UPDATE itself respects claims: a claim taken between a save's read and its
    write (possible on PostgreSQL, where claims do not change the version) wins."""
    from depthweb.store.errors import ClaimedError
    from depthweb.store.repo._common import bump_row

    w = make_world(n_tasks=1, rev="reviewer", other="reviewer")
    tid = w.task_ids[0]
    act(w.engine, claim_task, task_id=tid, user=w.user("other"), expected_version=0)
    with pytest.raises(ClaimedError, match="claimed by another reviewer"), \
            session_scope(w.engine) as s:
        bump_row(s, task_id=tid, expected_version=0, unclaimed_for=w.user("rev"))
    with pytest.raises(StaleRevisionError, match="version 0"), session_scope(w.engine) as s:
        bump_row(s, task_id=tid, expected_version=1, unclaimed_for=w.user("rev"))
    assert task_state(w.engine, tid) == (0, "in_review", 0, 0)
    with session_scope(w.engine) as s:
        mine = bump_row(s, task_id=tid, expected_version=0, unclaimed_for=w.user("other"))
        assert mine.version == 1


@pytest.mark.parametrize("action", ["note", "anchors", "mask", "approve", "reject"])
def test_saves_respect_another_reviewers_claim_until_its_lease_runs_out(make_world, action):
    from datetime import timedelta

    from depthweb.store.models import utcnow

    w = make_world(n_tasks=1, rev="reviewer", other="reviewer", admin="admin")
    tid = w.task_ids[0]
    act(w.engine, claim_task, task_id=tid, user=w.user("other"), expected_version=0)
    with pytest.raises(InvalidActionError, match="claimed by another reviewer"):
        ACTIONS[action](w, tid, w.user("rev"), 0)
    assert task_state(w.engine, tid) == (0, "in_review", 0, 0)
    with session_scope(w.engine) as s:  # the lease ran out
        s.get(Task, tid).claimed_at = utcnow() - timedelta(seconds=601)
    ACTIONS[action](w, tid, w.user("rev"), 0)
    assert task_state(w.engine, tid)[0] == 1
