"""mailboxes.dmarc_correct: the DMARC flag of the mailbox's domain (issue 10 item 5).

Nullable, and NULL for the rows already there: they were connected before the check existed, so "not
checked" is the honest value (false would claim a DMARC problem nobody looked for).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("mailboxes", sa.Column("dmarc_correct", sa.Boolean(), nullable=True))


def downgrade() -> None:
    # batch mode: SQLite before 3.35 has no DROP COLUMN, so Alembic rebuilds the table there.
    with op.batch_alter_table("mailboxes") as batch:
        batch.drop_column("dmarc_correct")
