"""mailboxes.mailbox_type: "user" or "shared", as Exchange reports it (issue 10 item 1).

Nullable, and NULL for the rows already there: they were connected before the type was recorded, and
NULL is also what a mailbox gets when the app may not read mailboxSettings (the type is not known).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("mailboxes", sa.Column("mailbox_type", sa.String(16), nullable=True))


def downgrade() -> None:
    # batch mode: SQLite before 3.35 has no DROP COLUMN, so Alembic rebuilds the table there.
    with op.batch_alter_table("mailboxes") as batch:
        batch.drop_column("mailbox_type")
