"""bulk_jobs and bulk_job_items: large imports as jobs (API.md 7).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from m365connect.db.base import IdType, UTCDateTime

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "bulk_jobs",
        sa.Column("id", IdType, primary_key=True, autoincrement=True),
        sa.Column("account_id", IdType, nullable=False),
        sa.Column("credential_id", IdType, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("processed", sa.Integer(), nullable=False),
        sa.Column("connected", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("chunk_size", sa.Integer(), nullable=False),
        sa.Column("idempotency_key", sa.String(255), nullable=True),
        sa.Column("body_hash", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=True),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_bulk_jobs"),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name="fk_bulk_jobs_account_id_accounts", ondelete="CASCADE"
        ),
        sa.UniqueConstraint("account_id", "idempotency_key", name="uq_bulk_jobs_account_id_idempotency_key"),
    )
    op.create_index("ix_bulk_jobs_account_id_id", "bulk_jobs", ["account_id", "id"])
    op.create_table(
        "bulk_job_items",
        sa.Column("job_id", IdType, nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("mailbox_email", sa.Text(), nullable=False),
        sa.Column("display_name", sa.Text(), nullable=True),
        sa.Column("duplicate", sa.Boolean(), nullable=False),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("job_id", "position", name="pk_bulk_job_items"),
        sa.ForeignKeyConstraint(
            ["job_id"], ["bulk_jobs.id"], name="fk_bulk_job_items_job_id_bulk_jobs", ondelete="CASCADE"
        ),
    )


def downgrade() -> None:
    op.drop_table("bulk_job_items")
    op.drop_table("bulk_jobs")
