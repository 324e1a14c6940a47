"""graph_credentials.cloud: the national cloud of the app registration (issue 10 item 4).

(Planned as 0003; 0003 went to mailboxes.mailbox_type, merged first.)

NOT NULL with the server default 'global': every credential stored before clouds existed was verified
against the global cloud, so 'global' is the true value of those rows, not a guess.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "graph_credentials",
        sa.Column("cloud", sa.String(16), nullable=False, server_default="global"),
    )


def downgrade() -> None:
    # batch mode: SQLite before 3.35 has no DROP COLUMN, so Alembic rebuilds the table there.
    with op.batch_alter_table("graph_credentials") as batch:
        batch.drop_column("cloud")
