"""Repository functions: keyword-only, the session and the acting user passed in by the caller
(a web handler or CLI command that opened the session with ``session_scope``)."""

from depthweb.store.repo._common import get_task, head_revision
from depthweb.store.repo.catalog import (
    add_image,
    add_prediction,
    create_dataset,
    ensure_task,
    find_image,
    get_dataset,
    images_without_prediction,
    list_datasets,
    list_exports,
    record_export,
    require_dataset,
    set_gold,
)
from depthweb.store.repo.history import (
    LabelRecord,
    current_corrections,
    label_records,
    task_history,
)
from depthweb.store.repo.queue import (
    claim_task,
    next_task,
    release_task,
    reviews_done,
    set_required_reviews,
)
from depthweb.store.repo.review import (
    add_correction,
    add_note,
    adjudicate,
    approve_task,
    consensus,
    reject_task,
    submit_review,
)
from depthweb.store.repo.stats import ReviewerStats, queue_counts, reviewer_stats

__all__ = [
    "LabelRecord",
    "ReviewerStats",
    "add_correction",
    "add_image",
    "add_note",
    "add_prediction",
    "adjudicate",
    "approve_task",
    "claim_task",
    "consensus",
    "create_dataset",
    "current_corrections",
    "ensure_task",
    "find_image",
    "get_dataset",
    "get_task",
    "head_revision",
    "images_without_prediction",
    "label_records",
    "list_datasets",
    "list_exports",
    "next_task",
    "queue_counts",
    "record_export",
    "reject_task",
    "release_task",
    "require_dataset",
    "reviewer_stats",
    "reviews_done",
    "set_gold",
    "set_required_reviews",
    "submit_review",
    "task_history",
]
