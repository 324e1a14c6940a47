"""Graph pacing (issue 12 item 2): the budgets every process shares, and the Outlook slots as leases.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "graph_pace_budgets",
        sa.Column("key", sa.String(300), nullable=False),
        sa.Column("tokens", sa.Float(), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("paused_until", sa.Float(), nullable=False),
        sa.Column("slow_until", sa.Float(), nullable=False),
        sa.Column("interactive_until", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_graph_pace_budgets"),
    )
    op.create_table(
        "graph_pace_slots",
        sa.Column("key", sa.String(300), nullable=False),
        sa.Column("slot", sa.Integer(), nullable=False),
        sa.Column("holder", sa.String(64), nullable=True),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("key", "slot", name="pk_graph_pace_slots"),
    )


def downgrade() -> None:
    op.drop_table("graph_pace_slots")
    op.drop_table("graph_pace_budgets")
