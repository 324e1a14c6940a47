"""Background verification (issue 11 item 2, API.md 6): mailbox health, credential checks and reminders.

mailboxes: health_state (NOT NULL, server default 'OK'), health_error, health_checked_at, failing_since and
next_check_at, with two partial indexes (ACTIVE rows only) for the planner. Existing rows become OK and
unchecked (health_checked_at NULL): each was verified when it connected and nothing since has said
otherwise; next_check_at NULL lets the planner give each one a first check spread over the interval
(docs/decisions.md).

graph_credentials: checked_at (the last time Microsoft was asked), next_check_at, announced_status (the
status last reported by an event; NULL is VALID, so an existing INVALID or EXPIRED credential is announced
once by its first check) and reminded_days_left (the smallest expiry reminder sent for the current secret).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from m365connect.db.base import UTCDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_ACTIVE = sa.text("status = 'ACTIVE'")


def upgrade() -> None:
    op.add_column("mailboxes", sa.Column("health_state", sa.String(16), nullable=False, server_default="OK"))
    op.add_column("mailboxes", sa.Column("health_error", sa.String(64), nullable=True))
    op.add_column("mailboxes", sa.Column("health_checked_at", UTCDateTime(), nullable=True))
    op.add_column("mailboxes", sa.Column("failing_since", UTCDateTime(), nullable=True))
    op.add_column("mailboxes", sa.Column("next_check_at", UTCDateTime(), nullable=True))
    op.create_index(
        "ix_mailboxes_health_due",
        "mailboxes",
        ["next_check_at"],
        sqlite_where=_ACTIVE,
        postgresql_where=_ACTIVE,
    )
    op.create_index(
        "ix_mailboxes_health_credential_due",
        "mailboxes",
        ["credential_id", "next_check_at"],
        sqlite_where=_ACTIVE,
        postgresql_where=_ACTIVE,
    )
    op.add_column("graph_credentials", sa.Column("checked_at", UTCDateTime(), nullable=True))
    op.add_column("graph_credentials", sa.Column("next_check_at", UTCDateTime(), nullable=True))
    op.add_column("graph_credentials", sa.Column("announced_status", sa.String(16), nullable=True))
    op.add_column("graph_credentials", sa.Column("reminded_days_left", sa.Integer(), nullable=True))
    op.create_index("ix_graph_credentials_next_check_at", "graph_credentials", ["next_check_at"])


def downgrade() -> None:
    op.drop_index("ix_graph_credentials_next_check_at", table_name="graph_credentials")
    op.drop_index("ix_mailboxes_health_credential_due", table_name="mailboxes")
    op.drop_index("ix_mailboxes_health_due", table_name="mailboxes")
    # batch mode: SQLite before 3.35 has no DROP COLUMN, so Alembic rebuilds the table there.
    with op.batch_alter_table("graph_credentials") as batch:
        for column in ("reminded_days_left", "announced_status", "next_check_at", "checked_at"):
            batch.drop_column(column)
    with op.batch_alter_table("mailboxes") as batch:
        for column in ("next_check_at", "failing_since", "health_checked_at", "health_error", "health_state"):
            batch.drop_column(column)
