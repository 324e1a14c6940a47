"""Bulk jobs and their items: the input stored once at the 202, each item's result written by its chunk."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from m365connect.db.base import Base, IdType, UTCDateTime, utcnow

QUEUED, RUNNING, DONE, CANCELLED = "QUEUED", "RUNNING", "DONE", "CANCELLED"
FINISHED = frozenset({DONE, CANCELLED})


class BulkJob(Base):
    """One job of one account: its credential, status, counts and times, and its idempotency key."""

    __tablename__ = "bulk_jobs"
    __table_args__ = (
        # Two requests with one key create one job: the loser of the race reads the winner's row.
        UniqueConstraint("account_id", "idempotency_key", name="uq_bulk_jobs_account_id_idempotency_key"),
        Index("ix_bulk_jobs_account_id_id", "account_id", "id"),
        # The sweeper and the pending-items gauge read unfinished jobs only.
        Index("ix_bulk_jobs_status", "status"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True, autoincrement=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    # No foreign key: a job's history outlives its credential (a chunk then finds it gone, see jobs/run.py).
    credential_id: Mapped[int] = mapped_column(IdType)
    status: Mapped[str] = mapped_column(String(16), default=QUEUED)
    total: Mapped[int] = mapped_column(Integer)
    processed: Mapped[int] = mapped_column(Integer, default=0)
    connected: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    chunk_size: Mapped[int] = mapped_column(Integer)
    idempotency_key: Mapped[str | None] = mapped_column(String(255), default=None)
    body_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    # When a chunk last wrote results (null: none yet), and how often the sweeper queued a chunk again
    # since (jobs/sweep.py): a job that writes nothing while its next chunk has no engine job is stuck.
    progressed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    sweeps: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The job whose failed rows this one retries (the console's "retry the failed ones"); no foreign key.
    retry_of: Mapped[int | None] = mapped_column(IdType, default=None)


class BulkJobItem(Base):
    """One submitted account of a job: its position, the input as submitted, and its result (null until
    its chunk has written it, in the same transaction as the mailbox it connected)."""

    __tablename__ = "bulk_job_items"

    job_id: Mapped[int] = mapped_column(
        ForeignKey("bulk_jobs.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    position: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    mailbox_email: Mapped[str] = mapped_column(Text)
    display_name: Mapped[str | None] = mapped_column(Text, default=None)
    # The address appeared earlier in the job (planned once over the whole input at the 202).
    duplicate: Mapped[bool] = mapped_column(Boolean, default=False)
    # none_as_null: a Python None is SQL NULL (not JSON null), which is what "not written yet" tests.
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True), default=None)
