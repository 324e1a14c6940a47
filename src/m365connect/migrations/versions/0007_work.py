"""work: the background work engine's tables (issue 11 item 1, docs/decisions.md).

PostgreSQL: pgqueuer 1.6.0's schema, the output of `pgq sql install` kept verbatim beside this file
(0007_pgqueuer_install.sql); a pgqueuer upgrade needs a new revision from `pgq sql upgrade`, and the
worker's start-up check (`QueueManager.verify_structure`) refuses a schema that drifted.
SQLite: the small queue of our own (`work_jobs`). Both: `work_schedules` (periodic tasks).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from __future__ import annotations

import re
from pathlib import Path

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

PGQUEUER_INSTALL = Path(__file__).with_name("0007_pgqueuer_install.sql")
# `pgq sql uninstall` (pgqueuer 1.6.0), in its order.
PGQUEUER_UNINSTALL = (
    "DROP TRIGGER IF EXISTS tg_pgqueuer_changed ON pgqueuer",
    "DROP FUNCTION IF EXISTS fn_pgqueuer_changed",
    "DROP TABLE IF EXISTS pgqueuer",
    "DROP TABLE IF EXISTS pgqueuer_log",
    "DROP TABLE IF EXISTS pgqueuer_schedules",
    "DROP TABLE IF EXISTS pgqueuer_statistics",
    "DROP TYPE IF EXISTS pgqueuer_status",
)


def pgqueuer_statements(script: str) -> list[str]:
    """The install script's statements, one each (asyncpg prepares one statement at a time).

    Statements start at the beginning of a line with CREATE; the function body's own semicolons sit on
    indented lines, so they never start one.
    """
    body = "\n".join(line for line in script.splitlines() if not line.startswith("--"))
    return [part.strip().rstrip(";") for part in re.split(r";\s*\n(?=CREATE )", body) if part.strip()]


def upgrade() -> None:
    op.create_table(
        "work_schedules",
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("next_run_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_work_schedules"),
    )
    if op.get_bind().dialect.name == "postgresql":
        bind = op.get_bind()
        for statement in pgqueuer_statements(PGQUEUER_INSTALL.read_text()):
            bind.exec_driver_sql(statement)  # verbatim: no bind-parameter parsing of `::casts`
        return
    op.create_table(
        "work_jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(100), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("run_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("owner", sa.String(64), nullable=True),
        sa.Column("lease_until_ms", sa.BigInteger(), nullable=True),
        sa.Column("dedupe_key", sa.String(255), nullable=True),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("last_error", sa.String(300), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_work_jobs"),
    )
    op.create_index("ix_work_jobs_status_run_at_ms", "work_jobs", ["status", "run_at_ms"])
    op.create_index(
        "ix_work_jobs_dedupe_key",
        "work_jobs",
        ["dedupe_key"],
        unique=True,
        sqlite_where=sa.text("dedupe_key IS NOT NULL AND status IN ('queued', 'running')"),
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in PGQUEUER_UNINSTALL:
            op.execute(statement)
    else:
        op.drop_table("work_jobs")
    op.drop_table("work_schedules")
