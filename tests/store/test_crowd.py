"""Crowd review: the queue, N reviews with consensus and adjudication, gold tasks, statistics."""

from __future__ import annotations

from datetime import timedelta

import pytest

from depthweb.store import InvalidActionError, PermissionDeniedError, session_scope
from depthweb.store.models import utcnow
from depthweb.store.repo import (
    adjudicate,
    approve_task,
    consensus,
    get_task,
    next_task,
    queue_counts,
    reviewer_stats,
    set_gold,
    set_required_reviews,
    submit_review,
)


def act(engine, fn, **kw):
    with session_scope(engine) as s:
        return fn(session=s, **kw)


def review(w, tid, name, decision):
    with session_scope(w.engine) as s:
        version = get_task(s, tid).version
        return submit_review(
            session=s,
            task_id=tid,
            user=w.user(name),
            expected_version=version,
            decision=decision,
            reasons=["bad"] if decision == "reject" else [],
        )


@pytest.mark.parametrize(
    ("decisions", "required", "status"),
    [
        ([], 1, "in_review"),
        (["approve"], 1, "approved"),
        (["reject"], 1, "rejected"),
        (["approve", "approve"], 3, "in_review"),
        (["approve"] * 3, 3, "approved"),
        (["reject"] * 3, 3, "rejected"),
        (["approve", "reject", "approve"], 3, "submitted"),
    ],
)
def test_consensus_rule(decisions, required, status):
    assert consensus(decisions, required) == status


def test_next_task_hands_out_by_priority_and_respects_claims(make_world):
    w = make_world(
        n_tasks=4,
        priorities=[0.1, 0.9, 0.5, 0.3],
        a="reviewer",
        b="reviewer",
        c="reviewer",
        view="viewer",
    )
    ids = w.task_ids
    now = utcnow()
    got_a = act(w.engine, next_task, user=w.user("a"), now=now)
    got_b = act(w.engine, next_task, user=w.user("b"), now=now)
    assert (got_a.id, got_b.id) == (ids[1], ids[2])  # b skips the task a holds
    assert (got_a.assignee_id, got_a.status, got_a.version) == (w.user("a").id, "in_review", 0)
    again = act(w.engine, next_task, user=w.user("a"), now=now + timedelta(seconds=5))
    assert (again.id, again.version) == (ids[1], 0)  # own claim returned unchanged
    later = now + timedelta(seconds=601)  # a's lease ran out: c may take the task
    got_c = act(w.engine, next_task, user=w.user("c"), now=later)
    assert (got_c.id, got_c.assignee_id, got_c.version) == (ids[1], w.user("c").id, 0)
    with pytest.raises(InvalidActionError, match="claimed by another reviewer"):
        act(w.engine, approve_task, task_id=ids[1], user=w.user("a"), expected_version=0)
    act(w.engine, approve_task, task_id=ids[1], user=w.user("c"), expected_version=0)
    order = []
    for _ in range(3):
        t = act(w.engine, next_task, user=w.user("c"), now=later)
        order.append(t.id)
        act(w.engine, approve_task, task_id=t.id, user=w.user("c"), expected_version=t.version)
    assert order == [ids[2], ids[3], ids[0]]  # b's claim on ids[2] expired as well
    assert act(w.engine, next_task, user=w.user("c"), now=later) is None
    with pytest.raises(PermissionDeniedError):
        act(w.engine, next_task, user=w.user("view"))


def test_n_reviews_consensus_and_adjudication(make_world):
    w = make_world(
        n_tasks=2, required_reviews=3, a="reviewer", b="reviewer", c="reviewer", boss="admin"
    )
    t_agree, t_split = w.task_ids
    for name in "abc":
        review(w, t_agree, name, "approve")
    for name, decision in zip("abc", ["approve", "reject", "approve"], strict=True):
        task = review(w, t_split, name, decision)
    assert task.status == "submitted"
    with session_scope(w.engine, readonly=True) as s:
        assert get_task(s, t_agree).status == "approved"
    with pytest.raises(InvalidActionError, match="adjudication"):
        act(
            w.engine,
            approve_task,
            task_id=t_split,
            user=w.user("boss"),
            expected_version=task.version,
        )
    with pytest.raises(PermissionDeniedError):
        act(
            w.engine,
            adjudicate,
            task_id=t_split,
            user=w.user("a"),
            expected_version=task.version,
            decision="reject",
        )
    final = act(
        w.engine,
        adjudicate,
        task_id=t_split,
        user=w.user("boss"),
        expected_version=task.version,
        decision="reject",
        note="glass",
    )
    assert (final.status, final.version) == ("rejected", task.version + 1)


def test_a_reviewer_gets_each_task_once_until_n_reviews_are_in(make_world):
    w = make_world(n_tasks=1, required_reviews=2, a="reviewer", b="reviewer")
    tid = w.task_ids[0]
    t = act(w.engine, next_task, user=w.user("a"))
    act(w.engine, approve_task, task_id=tid, user=w.user("a"), expected_version=t.version)
    assert act(w.engine, next_task, user=w.user("a")) is None
    t = act(w.engine, next_task, user=w.user("b"))
    assert t.id == tid
    done = act(w.engine, approve_task, task_id=tid, user=w.user("b"), expected_version=t.version)
    assert done.status == "approved"


def test_gold_tasks_are_mixed_in_and_measure_accuracy(make_world):
    w = make_world(n_tasks=8, priorities=[8, 7, 6, 5, 4, 3, 2, 1], a="reviewer", boss="admin")
    gold = {w.task_ids[6]: "approve", w.task_ids[7]: "reject"}
    for tid, answer in gold.items():
        act(
            w.engine,
            set_gold,
            task_id=tid,
            user=w.user("boss"),
            expected_version=0,
            gold_decision=answer,
        )
    served = []
    while (t := act(w.engine, next_task, user=w.user("a"), gold_every=3)) is not None:
        served.append((t.id, t.is_gold))
        task = review(w, t.id, "a", "approve")  # right on the first gold task, wrong on 2nd
        assert task.status == ("new" if t.is_gold else "approved")  # gold keeps its status
    assert [g for _, g in served] == [False, False, True, False, False, True, False, False]
    assert [tid for tid, g in served if not g] == w.task_ids[:6]  # by priority
    (stats,) = act(w.engine, reviewer_stats)
    assert (stats.n_reviews, stats.n_gold, stats.n_gold_correct) == (6, 2, 1)
    assert stats.gold_accuracy == pytest.approx(0.5)
    counts = act(w.engine, queue_counts, dataset_id=w.dataset_id)
    assert counts == {"new": 0, "in_review": 0, "submitted": 0, "approved": 6, "rejected": 0,
                      "broken": 0}


def test_reviewer_agreement_with_the_consensus(make_world):
    w = make_world(
        n_tasks=5, required_reviews=3, a="reviewer", b="reviewer", c="reviewer", boss="admin"
    )
    t1, t2, t3, t4, _ = w.task_ids
    plan = {t1: "aaa", t2: "aar", t3: "rrr", t4: "a"}  # per task: a's, b's, c's decision
    for tid, decisions in plan.items():
        for name, d in zip("abc", decisions, strict=False):
            review(w, tid, name, "approve" if d == "a" else "reject")
    with session_scope(w.engine) as s:
        adjudicate(
            session=s,
            task_id=t2,
            user=w.user("boss"),
            expected_version=get_task(s, t2).version,
            decision="approve",
        )
    stats = {s.name: s for s in act(w.engine, reviewer_stats, dataset_id=w.dataset_id)}
    a, b, c = stats["a"], stats["b"], stats["c"]
    assert (a.n_reviews, a.n_approve, a.n_reject, a.n_decided, a.n_agree) == (4, 3, 1, 3, 3)
    assert (b.n_reviews, b.n_decided, b.n_agree) == (3, 3, 3)
    assert (c.n_reviews, c.n_approve, c.n_reject, c.n_decided, c.n_agree) == (3, 1, 2, 3, 2)
    assert c.agreement_rate == pytest.approx(2 / 3) and a.agreement_rate == 1.0
    assert a.gold_accuracy is None and "boss" not in stats
    counts = act(w.engine, queue_counts, dataset_id=w.dataset_id)
    assert counts == {"new": 1, "in_review": 1, "submitted": 0, "approved": 2, "rejected": 1,
                      "broken": 0}


def test_changing_n_updates_open_tasks(make_world):
    w = make_world(n_tasks=3, a="reviewer", boss="admin")
    t0, t1, _ = w.task_ids
    review(w, t0, "a", "approve")
    changed = act(
        w.engine,
        set_required_reviews,
        user=w.user("boss"),
        dataset_id=w.dataset_id,
        required_reviews=2,
    )
    assert changed == 2  # the approved task keeps its decision
    assert review(w, t1, "a", "approve").status == "in_review"  # 1 of 2
    with pytest.raises(PermissionDeniedError):
        act(
            w.engine,
            set_required_reviews,
            user=w.user("a"),
            dataset_id=w.dataset_id,
            required_reviews=1,
        )
    act(
        w.engine,
        set_required_reviews,
        user=w.user("boss"),
        dataset_id=w.dataset_id,
        required_reviews=1,
    )
    with session_scope(w.engine, readonly=True) as s:
        statuses = [(get_task(s, t).status, get_task(s, t).required_reviews) for t in w.task_ids]
    assert statuses == [("approved", 1), ("approved", 1), ("new", 1)]
