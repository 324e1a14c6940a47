"""The background work's tables: periodic schedules on every database; the SQLite queue (SQLite only).

On PostgreSQL the queue is pgqueuer's own schema (`pgqueuer*`, created by migration 0007 from
`pgq sql install`); on SQLite it is `work_jobs`, which is not part of the models' metadata because it
exists on one dialect only (`engine_owned` keeps both out of the schema comparison).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, MetaData, String, Table, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from m365connect.db.base import NAMING_CONVENTION, Base

# Job states of the SQLite queue (pgqueuer's are 'queued', 'picked', ...). A finished job is deleted.
QUEUED, RUNNING, FAILED = "queued", "running", "failed"


class WorkSchedule(Base):
    """One periodic task: the next run (epoch milliseconds), advanced by compare-and-set by one process."""

    __tablename__ = "work_schedules"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    next_run_ms: Mapped[int] = mapped_column(BigInteger)


sqlite_metadata = MetaData(naming_convention=NAMING_CONVENTION)

# Times are epoch milliseconds (integers): exact to compare and to compare-and-set, on every process.
jobs = Table(
    "work_jobs",
    sqlite_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(100), nullable=False),
    Column("payload", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("run_at_ms", BigInteger, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("owner", String(64), nullable=True),
    Column("lease_until_ms", BigInteger, nullable=True),
    Column("dedupe_key", String(255), nullable=True),
    Column("created_ms", BigInteger, nullable=False),
    Column("last_error", String(300), nullable=True),
    Index("ix_work_jobs_status_run_at_ms", "status", "run_at_ms"),
    # A key blocks a second job only while the first waits or runs (pgqueuer's index says the same).
    Index(
        "ix_work_jobs_dedupe_key",
        "dedupe_key",
        unique=True,
        sqlite_where=text("dedupe_key IS NOT NULL AND status IN ('queued', 'running')"),
    ),
)

PGQUEUER_TABLES = ("pgqueuer", "pgqueuer_log", "pgqueuer_schedules", "pgqueuer_statistics")


def engine_owned(name: str | None) -> bool:
    """Whether a table belongs to one dialect's queue (left out of the models-vs-schema comparison)."""
    return name == jobs.name or name in PGQUEUER_TABLES
