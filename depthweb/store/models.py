"""ORM models (SQLAlchemy 2 typed mappings) and the vocabularies stored in them.

The schema is created by the Alembic migrations in ``depthweb/store/migrations``; tests check that
these models and the migrations agree. Times are timezone-aware UTC on every backend.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    MetaData,
    String,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from depthweb.compat import StrEnum
from depthweb.types import DepthKind, IntrinsicsSource


class Role(StrEnum):
    ADMIN = "admin"
    REVIEWER = "reviewer"
    VIEWER = "viewer"


class TaskStatus(StrEnum):
    NEW = "new"
    IN_REVIEW = "in_review"
    SUBMITTED = "submitted"  # N reviews disagree: awaiting admin adjudication
    APPROVED = "approved"
    REJECTED = "rejected"
    BROKEN = "broken"  # a file it needs is missing or fails its checksum: set aside


class Decision(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"


class Action(StrEnum):
    """What a revision did."""

    APPROVE = "approve"
    REJECT = "reject"
    MASK = "mask"  # ignore mask (sky, glass, mirrors, people); blob = bool (H, W)
    ANCHORS = "anchors"  # metric scale anchors
    ORDINAL = "ordinal"  # "A is closer than B" pairs
    PLANE_FILL = "plane_fill"  # region replaced by a plane fitted to its border; blob = region
    FAR_FILL = "far_fill"  # region marked "far"; blob = region
    NOTE = "note"
    ADJUDICATE = "adjudicate"
    UNDO = "undo"  # reverts the author's own last correction (payload["undoes"])
    PICK = "pick"  # an admin picks (or merges) crowd branches into the exported label


CORRECTION_ACTIONS: frozenset[Action] = frozenset(
    {Action.MASK, Action.ANCHORS, Action.ORDINAL, Action.PLANE_FILL, Action.FAR_FILL}
)
"""Actions that change the label (the rest record decisions or notes)."""

LABEL_ACTIONS: frozenset[Action] = CORRECTION_ACTIONS | {Action.UNDO, Action.PICK}
"""Actions whose revision carries the label it produced (``label_blob_sha256``)."""

class JobKind(StrEnum):
    IMPORT = "import"
    PSEUDO_LABEL = "pseudo_label"
    EXPORT = "export"


class JobStatus(StrEnum):
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # its process died (no heartbeat, or its pid is gone)


FINAL_STATUSES: frozenset[TaskStatus] = frozenset({TaskStatus.APPROVED, TaskStatus.REJECTED})

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out (SQLite stores naive UTC text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use an aware UTC datetime")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


def _one_of(column: str, values: type[StrEnum], name: str | None = None) -> CheckConstraint:
    allowed = ", ".join(f"'{v.value}'" for v in values)
    return CheckConstraint(f"{column} IN ({allowed})", name=name or f"{column}_valid")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime,
        dict[str, Any]: JSON,
        list[Any]: JSON,
    }


class User(Base):
    __tablename__ = "users"
    __table_args__ = (_one_of("role", Role),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Bumped on every password change: login sessions made under an older epoch are void.
    password_epoch: Mapped[int] = mapped_column(default=0, server_default="0")

    def __repr__(self) -> str:
        return f"User(id={self.id}, name={self.name!r}, role={self.role!r})"


class LoginSession(Base):
    """A web login (one cookie): only the SHA-256 of the token is stored. Valid while the user
    is active, ``epoch`` equals the user's ``password_epoch``, ``revoked_at`` is unset and
    neither the idle nor the absolute expiry has passed (:mod:`depthweb.store.sessions`)."""

    __tablename__ = "login_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    epoch: Mapped[int] = mapped_column(default=0)
    client: Mapped[str | None] = mapped_column(String(64), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


class Dataset(Base):
    __tablename__ = "datasets"
    __table_args__ = (CheckConstraint("required_reviews >= 1", name="required_reviews_min"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    required_reviews: Mapped[int] = mapped_column(default=1)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Blob(Base):
    """A content-addressed file under the blob root; ``shape``/``dtype`` are None for bytes."""

    __tablename__ = "blobs"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    path: Mapped[str] = mapped_column(String(255), unique=True)
    shape: Mapped[list[Any] | None] = mapped_column()
    dtype: Mapped[str | None] = mapped_column(String(32))
    nbytes: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Image(Base):
    __tablename__ = "images"
    __table_args__ = (UniqueConstraint("dataset_id", "sha256"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"))
    sha256: Mapped[str] = mapped_column(String(64))
    blob_sha256: Mapped[str] = mapped_column(ForeignKey("blobs.sha256"))
    width: Mapped[int]
    height: Mapped[int]
    exif_focal_35mm: Mapped[float | None] = mapped_column(Float)
    original_filename: Mapped[str] = mapped_column(String(512), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    dataset: Mapped[Dataset] = relationship()
    blob: Mapped[Blob] = relationship()


class Prediction(Base):
    __tablename__ = "predictions"
    __table_args__ = (
        UniqueConstraint("image_id", "model", "weights"),
        _one_of("kind", DepthKind),
        _one_of("intrinsics_source", IntrinsicsSource),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"))
    model: Mapped[str] = mapped_column(String(128))
    weights: Mapped[str] = mapped_column(String(128), default="")
    kind: Mapped[str] = mapped_column(String(32))
    fx: Mapped[float] = mapped_column(Float)
    fy: Mapped[float] = mapped_column(Float)
    cx: Mapped[float] = mapped_column(Float)
    cy: Mapped[float] = mapped_column(Float)
    intrinsics_source: Mapped[str] = mapped_column(String(16))
    intrinsics_note: Mapped[str] = mapped_column(String(255), default="")
    depth_blob_sha256: Mapped[str] = mapped_column(ForeignKey("blobs.sha256"))
    uncertainty: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    image: Mapped[Image] = relationship()
    depth_blob: Mapped[Blob] = relationship()


class Task(Base):
    """One image to review. ``version`` grows by one with every mutation (optimistic lock)."""

    __tablename__ = "tasks"
    __table_args__ = (
        UniqueConstraint("image_id"),
        _one_of("status", TaskStatus),
        _one_of("gold_decision", Decision),
        CheckConstraint("required_reviews >= 1", name="required_reviews_min"),
        Index("ix_tasks_queue", "dataset_id", "status", "priority"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"))
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"))
    prediction_id: Mapped[int] = mapped_column(ForeignKey("predictions.id"))
    status: Mapped[str] = mapped_column(String(16), default=TaskStatus.NEW.value)
    priority: Mapped[float] = mapped_column(Float, default=0.0)
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    claimed_at: Mapped[datetime | None] = mapped_column()
    version: Mapped[int] = mapped_column(default=0)
    is_gold: Mapped[bool] = mapped_column(default=False)
    gold_decision: Mapped[str | None] = mapped_column(String(16))
    required_reviews: Mapped[int] = mapped_column(default=1)
    broken_reason: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    dataset: Mapped[Dataset] = relationship()
    image: Mapped[Image] = relationship()
    prediction: Mapped[Prediction] = relationship()
    assignee: Mapped[User | None] = relationship()


class Revision(Base):
    """Append-only history: one row per action, ``parent`` = the task's previous head.

    ``task_version`` is the task version this action produced; unique per task, and a parent
    has at most one child, so the history of a task is a single chain.

    Label revisions (:data:`LABEL_ACTIONS`) keep the label they produced: ``label_blob_sha256``
    (float32 (H, W) in ``payload["label_kind"]`` space) and ``flags_blob_sha256`` (uint8 (H, W):
    bit 0 ignore, bit 1 far); both None = the teacher's prediction. ``rules_version`` is the
    version of the correction rules that made it (see ``geometry.corrections.RULES_VERSION``).
    ``branch_id``: the reviewer whose independent branch this is (crowd and gold tasks), None
    for the shared label.
    """

    __tablename__ = "revisions"
    __table_args__ = (
        UniqueConstraint("task_id", "task_version"),
        UniqueConstraint("parent_id"),
        _one_of("action", Action),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id"))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("revisions.id"))
    task_version: Mapped[int]
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    action: Mapped[str] = mapped_column(String(16))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    blob_sha256: Mapped[str | None] = mapped_column(ForeignKey("blobs.sha256"))
    rules_version: Mapped[int] = mapped_column(default=1, server_default="1")
    label_blob_sha256: Mapped[str | None] = mapped_column(ForeignKey("blobs.sha256"))
    flags_blob_sha256: Mapped[str | None] = mapped_column(ForeignKey("blobs.sha256"))
    branch_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    author: Mapped[User] = relationship(foreign_keys=[author_id])
    blob: Mapped[Blob | None] = relationship(foreign_keys=[blob_sha256])
    label_blob: Mapped[Blob | None] = relationship(foreign_keys=[label_blob_sha256])
    flags_blob: Mapped[Blob | None] = relationship(foreign_keys=[flags_blob_sha256])


class Review(Base):
    """One reviewer's decision; ``active`` turns False when a later correction changes the label."""

    __tablename__ = "reviews"
    __table_args__ = (
        _one_of("decision", Decision),
        Index(None, "task_id"),
        Index(None, "reviewer_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id"))
    reviewer_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    revision_id: Mapped[int] = mapped_column(ForeignKey("revisions.id"), unique=True)
    decision: Mapped[str] = mapped_column(String(16))
    reasons: Mapped[list[Any]] = mapped_column(default=list)
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    reviewer: Mapped[User] = relationship()


class Export(Base):
    __tablename__ = "exports"

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"))
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    path: Mapped[str] = mapped_column(String(1024))
    filter: Mapped[dict[str, Any]] = mapped_column(default=dict)
    n_items: Mapped[int]
    manifest_sha256: Mapped[str] = mapped_column(String(64))


class Job(Base):
    """A long job (import, pseudo-label, export), from the web or the CLI, as the admin's jobs
    table shows it. ``done``/``total``: items handled so far (updated per committed batch);
    ``heartbeat_at``: refreshed while the job's process lives, so a job whose process died is
    told apart (:mod:`depthweb.services.review.jobs`); ``host``/``pid``: that process."""

    __tablename__ = "jobs"
    __table_args__ = (
        _one_of("kind", JobKind),
        _one_of("status", JobStatus),
        Index("ix_jobs_status", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    dataset: Mapped[str] = mapped_column(String(128))
    model: Mapped[str | None] = mapped_column(String(128))
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    started_by: Mapped[str] = mapped_column(String(64))
    host: Mapped[str] = mapped_column(String(255), default="")
    pid: Mapped[int | None] = mapped_column()
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.RUNNING.value)
    done: Mapped[int] = mapped_column(default=0)
    total: Mapped[int | None] = mapped_column()
    message: Mapped[str] = mapped_column(String(255), default="")
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column()
