"""Webhook subscriptions and the log of their delivery attempts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from m365connect.db.base import Base, IdType, UTCDateTime, utcnow


class Webhook(Base):
    """One account's subscription: where to POST which events, with a secret stored sealed."""

    __tablename__ = "webhooks"
    # The console's add form posted twice (a double click) adds one subscription: its one-time key.
    __table_args__ = (Index("uq_webhooks_account_id_form_key", "account_id", "form_key", unique=True),)

    id: Mapped[int] = mapped_column(IdType, primary_key=True, autoincrement=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    url: Mapped[str] = mapped_column(String(2048))
    # None: every type; else a sorted list of EventType values.
    event_types: Mapped[list[Any] | None] = mapped_column(JSON, default=None)
    description: Mapped[str | None] = mapped_column(String(200), default=None)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # The signing key (the whole `whsec_...` text), sealed with the service's SecretBox bound to this row.
    secret_ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    # The outbox cursor: events of the account up to this id have been handed to the work engine.
    last_dispatched_event_id: Mapped[int] = mapped_column(IdType, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
    # The one-time key of the console form that added it (None: added through the API).
    form_key: Mapped[str | None] = mapped_column(String(64), default=None)


class WebhookDelivery(Base):
    """One delivery attempt of one event to one subscription (the log behind /deliveries)."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_webhook_id_id", "webhook_id", "id"),)

    id: Mapped[int] = mapped_column(IdType, primary_key=True, autoincrement=True)
    webhook_id: Mapped[int] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"))
    # No foreign key: events are pruned after their retention, the log may outlive them.
    event_id: Mapped[int] = mapped_column(IdType)
    attempted_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    status_code: Mapped[int | None] = mapped_column(Integer, default=None)
    error: Mapped[str | None] = mapped_column(String(200), default=None)
    duration_ms: Mapped[int] = mapped_column(Integer, default=0)
