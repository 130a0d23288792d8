"""The statements of every save, built once (Core, bound parameters), and ORM objects made
from their rows without a further query.

Building a SQLAlchemy statement costs about 0.3 ms of Python, an ORM-enabled
``UPDATE ... RETURNING`` or a flush about 0.4-1 ms; executing a prebuilt Core statement with
bound parameters about 0.05 ms (SQLite, this machine). A review save runs a handful of
statements, so they are built here at import time and executed on the session's connection.
Column values that vary per call (``SET`` columns of the version bump, the columns of an
insert) are passed as execution parameters: the compiled form is cached per set of names.

The objects the repository functions return stay ORM objects: :func:`adopt` turns a row
(``RETURNING`` every column) into a persistent instance of the session, or refreshes the
instance the session already holds, as ``populate_existing`` would.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from sqlalchemy import bindparam, exists, false, or_, select, update
from sqlalchemy.orm import Session, make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value

from depthweb.store.models import Base, Review, Revision, Task, User

M = TypeVar("M", bound=Base)

TASKS = Task.__table__
REVISIONS = Revision.__table__
REVIEWS = Review.__table__
USERS = User.__table__

READ_TASK = select(
    *TASKS.c,
    select(USERS.c.role).where(USERS.c.id == bindparam("actor_id")).scalar_subquery()
    .label("actor_role"),
    select(USERS.c.active).where(USERS.c.id == bindparam("actor_id")).scalar_subquery()
    .label("actor_active"),
).where(TASKS.c.id == bindparam("task_id"))
"""The task and its saver's (role, active) as the database has them, in one round trip."""

TASK_VERSION = select(TASKS.c.version, TASKS.c.claimed_at).where(TASKS.c.id == bindparam("task_id"))

_CLAIM_EXPIRED = TASKS.c.claimed_at < bindparam("stale_before", type_=TASKS.c.claimed_at.type)
_GUARD = (TASKS.c.id == bindparam("task_id"), TASKS.c.version == bindparam("expected"))
BUMP = update(TASKS).where(*_GUARD).values(version=TASKS.c.version + 1).returning(*TASKS.c)
"""``SET version = version + 1, <execution parameters named after columns>`` where the version
is the expected one; returns the task (no row: stale or gone)."""

BUMP_UNCLAIMED = (
    update(TASKS)
    .where(*_GUARD, or_(TASKS.c.assignee_id.is_(None),
                        TASKS.c.assignee_id == bindparam("actor_id"),
                        TASKS.c.claimed_at.is_(None), _CLAIM_EXPIRED))
    .values(version=TASKS.c.version + 1)
    .returning(*TASKS.c)
)
""":data:`BUMP` that also refuses (no row) a task someone else holds a valid claim on, so a
claim taken between the save's read and its write (PostgreSQL) is not overwritten."""

BUMP_CHECKED = (
    update(TASKS)
    .where(*_GUARD, or_(TASKS.c.assignee_id.is_(None),
                        TASKS.c.assignee_id == bindparam("actor_id"),
                        TASKS.c.claimed_at.is_(None), _CLAIM_EXPIRED),
           exists().where(USERS.c.id == bindparam("actor_id"),
                          USERS.c.role == bindparam("actor_role"), USERS.c.active))
    .values(version=TASKS.c.version + 1)
    .returning(*TASKS.c)
)
""":data:`BUMP_UNCLAIMED` that also needs the saver stored with the role and active flag the
caller's object has: a save's checks folded into its write (no row: one of them failed)."""

INSERT_REVISION = (
    REVISIONS.insert()
    .values(parent_id=select(REVISIONS.c.id)
            .where(REVISIONS.c.task_id == bindparam("head_of"))
            .order_by(REVISIONS.c.task_version.desc()).limit(1).scalar_subquery())
    .returning(REVISIONS.c.id, REVISIONS.c.parent_id)
)
"""A revision whose parent is the task's head (the newest revision) at insert time."""

INSERT_REVIEW = REVIEWS.insert().returning(REVIEWS.c.id)

ACTIVE_DECISIONS = (
    select(REVIEWS.c.reviewer_id, REVIEWS.c.decision)
    .where(REVIEWS.c.task_id == bindparam("task_id"), REVIEWS.c.active)
    .order_by(REVIEWS.c.id)
)

_ACTIVE_OF_TASK = (REVIEWS.c.task_id == bindparam("of_task"), REVIEWS.c.active)
DEACTIVATE_REVIEWS = update(REVIEWS).where(*_ACTIVE_OF_TASK).values(active=false())
DEACTIVATE_OWN_REVIEW = (update(REVIEWS)
                         .where(*_ACTIVE_OF_TASK, REVIEWS.c.reviewer_id == bindparam("reviewer"))
                         .values(active=false()))


def adopt(session: Session, model: type[M], values: Mapping[str, Any], *,
          create: bool = True) -> M | None:
    """The persistent ``model`` instance for a row just written: the one the session holds,
    refreshed with ``values``, or (``create``) a new one added to the session as if loaded.
    ``values`` must hold every column (missing ones are left expired)."""
    key = session.identity_key(model, tuple(values[c.key] for c in model.__mapper__.primary_key))
    held = session.identity_map.get(key)
    if held is not None:
        for name, value in values.items():
            set_committed_value(held, name, value)
        return held  # type: ignore[return-value]
    if not create:
        return None
    obj = model(**values)
    make_transient_to_detached(obj)  # history reset: the row exists, nothing to flush
    session.add(obj)
    return obj


def sync_held(session: Session, model: type[M], match: Mapping[str, Any],
              values: Mapping[str, Any]) -> None:
    """Set ``values`` on the instances of ``model`` the session holds whose attributes equal
    ``match`` (what an ORM-enabled bulk ``UPDATE`` does with ``synchronize_session``)."""
    for obj in list(session.identity_map.values()):
        loaded = vars(obj)  # only loaded attributes: never a lazy load here
        if type(obj) is model and all(loaded.get(k) == v for k, v in match.items()):
            for name, value in values.items():
                set_committed_value(obj, name, value)
