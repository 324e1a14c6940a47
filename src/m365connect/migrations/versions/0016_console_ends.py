"""The console's loose ends (issue 13): an import started by "retry the failed ones" names the import it
retried; a subscription added from the console keeps its form's one-time key, so the same form posted
twice (a double click) adds one subscription.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from m365connect.db.base import IdType

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # No foreign key: a job's history outlives the job it retried, like its credential id.
    op.add_column("bulk_jobs", sa.Column("retry_of", IdType, nullable=True))
    op.add_column("webhooks", sa.Column("form_key", sa.String(64), nullable=True))
    # NULLs are distinct on both databases: subscriptions made through the API carry no key.
    op.create_index("uq_webhooks_account_id_form_key", "webhooks", ["account_id", "form_key"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_webhooks_account_id_form_key", table_name="webhooks")
    with op.batch_alter_table("webhooks") as batch:
        batch.drop_column("form_key")
    with op.batch_alter_table("bulk_jobs") as batch:
        batch.drop_column("retry_of")
