"""The console's one-time answer to adding a webhook (issue 13): the session remembers which new
subscription's secret it may show, once, after the POST's redirect.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from m365connect.db.base import IdType

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # No foreign key: a subscription deleted before its secret was shown simply has nothing to show.
    op.add_column("console_sessions", sa.Column("reveal_webhook_id", IdType, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("console_sessions") as batch:
        batch.drop_column("reveal_webhook_id")
