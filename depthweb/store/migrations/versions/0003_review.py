"""review: stored labels per revision, correction rules version, crowd branches, broken tasks

Revision ID: 0003_review
Revises: 0002_security
Create Date: 2026-12-02

- ``revisions.label_blob_sha256`` / ``flags_blob_sha256``: the label a correction produced, so
  opening a task reads one label instead of replaying its history;
- ``revisions.rules_version``: the correction rules that made it (existing rows: 1);
- ``revisions.branch_id``: the reviewer whose independent branch a revision belongs to;
- ``tasks.broken_reason`` and the status ``broken``; the actions ``undo`` and ``pick``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_review"
down_revision = "0002_security"
branch_labels = None
depends_on = None

OLD_STATUSES = "'new', 'in_review', 'submitted', 'approved', 'rejected'"
NEW_STATUSES = OLD_STATUSES + ", 'broken'"
OLD_ACTIONS = (
    "'approve', 'reject', 'mask', 'anchors', 'ordinal', 'plane_fill', 'far_fill', 'note', "
    "'adjudicate'"
)
NEW_ACTIONS = OLD_ACTIONS + ", 'undo', 'pick'"


def upgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("broken_reason", sa.String(length=255), nullable=True))
        batch.drop_constraint(op.f("ck_tasks_status_valid"), type_="check")
        batch.create_check_constraint(op.f("ck_tasks_status_valid"), f"status IN ({NEW_STATUSES})")
    with op.batch_alter_table("revisions") as batch:
        batch.add_column(
            sa.Column("rules_version", sa.Integer(), server_default="1", nullable=False)
        )
        batch.add_column(sa.Column("label_blob_sha256", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("flags_blob_sha256", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("branch_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            op.f("fk_revisions_label_blob_sha256_blobs"), "blobs", ["label_blob_sha256"],
            ["sha256"],
        )
        batch.create_foreign_key(
            op.f("fk_revisions_flags_blob_sha256_blobs"), "blobs", ["flags_blob_sha256"],
            ["sha256"],
        )
        batch.create_foreign_key(
            op.f("fk_revisions_branch_id_users"), "users", ["branch_id"], ["id"]
        )
        batch.drop_constraint(op.f("ck_revisions_action_valid"), type_="check")
        batch.create_check_constraint(
            op.f("ck_revisions_action_valid"), f"action IN ({NEW_ACTIONS})"
        )


def downgrade() -> None:
    with op.batch_alter_table("revisions") as batch:
        batch.drop_constraint(op.f("ck_revisions_action_valid"), type_="check")
        batch.create_check_constraint(
            op.f("ck_revisions_action_valid"), f"action IN ({OLD_ACTIONS})"
        )
        batch.drop_constraint(op.f("fk_revisions_branch_id_users"), type_="foreignkey")
        batch.drop_constraint(op.f("fk_revisions_flags_blob_sha256_blobs"), type_="foreignkey")
        batch.drop_constraint(op.f("fk_revisions_label_blob_sha256_blobs"), type_="foreignkey")
        batch.drop_column("branch_id")
        batch.drop_column("flags_blob_sha256")
        batch.drop_column("label_blob_sha256")
        batch.drop_column("rules_version")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_constraint(op.f("ck_tasks_status_valid"), type_="check")
        batch.create_check_constraint(op.f("ck_tasks_status_valid"), f"status IN ({OLD_STATUSES})")
        batch.drop_column("broken_reason")
