"""bulk_jobs: the time of the last written result, the sweeps since, and an index on status (issue 12).

The periodic sweeper (jobs/sweep.py) looks for QUEUED or RUNNING jobs that wrote nothing for longer than
M365CONNECT_BULK_JOB_SWEEP_GRACE_SECONDS and whose next chunk has no live engine job (the engine gave
it up); `sweeps` counts the times it queued a chunk again without a result written since, so that a
chunk that fails for good ends with a result per item instead of being queued forever. The status index
serves the sweeper and the pending-items gauge of /metrics (both read only unfinished jobs).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from m365connect.db.base import UTCDateTime

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("bulk_jobs") as table:
        table.add_column(sa.Column("progressed_at", UTCDateTime(), nullable=True))
        table.add_column(sa.Column("sweeps", sa.Integer(), nullable=False, server_default="0"))
    op.create_index("ix_bulk_jobs_status", "bulk_jobs", ["status"])


def downgrade() -> None:
    op.drop_index("ix_bulk_jobs_status", table_name="bulk_jobs")
    with op.batch_alter_table("bulk_jobs") as table:
        table.drop_column("sweeps")
        table.drop_column("progressed_at")
