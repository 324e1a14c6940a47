"""Adaptive Outlook concurrency (issue 12): each Outlook budget keeps the number of calls it lets in flight
(`slot_limit`, raised by probes Microsoft answers without pushback, halved by a 429) and until when a 429
holds it from probing again (`hold_until`).

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("graph_pace_budgets") as batch:
        batch.add_column(sa.Column("slot_limit", sa.Integer(), nullable=False, server_default="4"))
        batch.add_column(sa.Column("hold_until", sa.Float(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("graph_pace_budgets") as batch:
        batch.drop_column("hold_until")
        batch.drop_column("slot_limit")
