"""Connected mailboxes.

Two constraints carry the concurrency rules, so no check-then-act is needed:
- a partial unique index: an address is ACTIVE at most once per account;
- the credential foreign key is `ON DELETE SET NULL` and a CHECK forbids an ACTIVE row without a
  credential, so deleting a credential that an ACTIVE mailbox uses fails inside the database, and a
  mailbox inserted after its credential was deleted fails the foreign key.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from m365connect.db.base import Base, IdType, UTCDateTime, utcnow

ACTIVE = "ACTIVE"
DISCONNECTED = "DISCONNECTED"
HEALTH_OK = "OK"
HEALTH_FAILING = "FAILING"


class Mailbox(Base):
    """A Microsoft 365 mailbox connected (or once connected) by an account."""

    __tablename__ = "mailboxes"
    __table_args__ = (
        CheckConstraint("status <> 'ACTIVE' OR credential_id IS NOT NULL", name="active_has_credential"),
        CheckConstraint("status IN ('ACTIVE', 'DISCONNECTED')", name="status_known"),
        Index(
            "uq_mailboxes_active_email",
            "account_id",
            "email",
            unique=True,
            sqlite_where=text("status = 'ACTIVE'"),
            postgresql_where=text("status = 'ACTIVE'"),
        ),
        # The health planner's two reads (health/repository.py): the ACTIVE mailboxes due first, and one
        # credential's next ones (to fill its Graph batches). Partial: DISCONNECTED rows are never planned.
        Index(
            "ix_mailboxes_health_due",
            "next_check_at",
            sqlite_where=text("status = 'ACTIVE'"),
            postgresql_where=text("status = 'ACTIVE'"),
        ),
        Index(
            "ix_mailboxes_health_credential_due",
            "credential_id",
            "next_check_at",
            sqlite_where=text("status = 'ACTIVE'"),
            postgresql_where=text("status = 'ACTIVE'"),
        ),
        # /metrics counts the ACTIVE mailboxes by health state on each scrape: from this index alone.
        Index(
            "ix_mailboxes_health_state",
            "health_state",
            "status",  # no use to PostgreSQL, but SQLite reads the table for it without it here
            sqlite_where=text("status = 'ACTIVE'"),
            postgresql_where=text("status = 'ACTIVE'"),
        ),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True, autoincrement=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    credential_id: Mapped[int | None] = mapped_column(
        ForeignKey("graph_credentials.id", ondelete="SET NULL"), index=True
    )
    email: Mapped[str] = mapped_column(String(320))
    name: Mapped[str | None] = mapped_column(String(256))
    microsoft_user_id: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default=ACTIVE)
    spf_correct: Mapped[bool] = mapped_column(Boolean)
    dkim_correct: Mapped[bool] = mapped_column(Boolean)
    # NULL: not checked, for rows connected before the DMARC check existed (migration 0002).
    dmarc_correct: Mapped[bool | None] = mapped_column(Boolean, default=None)
    # "user" or "shared" (Graph's userPurpose); NULL: the app may not read it, or a row connected before
    # the type was recorded (migration 0003).
    mailbox_type: Mapped[str | None] = mapped_column(String(16), default=None)
    connected_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    disconnected_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    # Background verification (API.md 6, migration 0009). A FAILING mailbox stays ACTIVE.
    health_state: Mapped[str] = mapped_column(String(16), default=HEALTH_OK, server_default=HEALTH_OK)
    health_error: Mapped[str | None] = mapped_column(String(64), default=None)
    # NULL until the first background or on-demand check after the connection (which verified it).
    health_checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    failing_since: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    # When the planner next enqueues its check; NULL: not planned yet (the planner spreads it).
    next_check_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
