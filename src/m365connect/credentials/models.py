"""Graph credentials: an Entra app registration whose secret is stored encrypted."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from m365connect.db.base import Base, IdType, UTCDateTime, utcnow


class GraphCredential(Base):
    """One Entra app registration (tenant, client id, client secret) of one account."""

    __tablename__ = "graph_credentials"
    __table_args__ = (
        UniqueConstraint(
            "account_id", "tenant_key", "client_id", name="uq_graph_credentials_account_tenant_client"
        ),
        Index("ix_graph_credentials_next_check_at", "next_check_at"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True, autoincrement=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    tenant_id: Mapped[str] = mapped_column(String(255))
    # The tenant GUID from the token's `tid` when known, else the lower-cased tenant as given: duplicates key.
    tenant_key: Mapped[str] = mapped_column(String(255))
    client_id: Mapped[str] = mapped_column(String(36))
    # The national cloud (microsoft/clouds.py); fixed at creation. Not part of the unique key: a tenant
    # lives in exactly one cloud, so (tenant, client) already names one app (docs/decisions.md).
    cloud: Mapped[str] = mapped_column(String(16), default="global", server_default="global")
    # `client_secret` or `certificate`. For a certificate the sealed "secret" is its private key (PKCS#8
    # PEM) and only the thumbprint is kept of the certificate: the client assertion names it by it.
    credential_type: Mapped[str] = mapped_column(
        String(16), default="client_secret", server_default="client_secret"
    )
    certificate_thumbprint: Mapped[str | None] = mapped_column(String(40), default=None)
    secret_ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    secret_expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    verification_status: Mapped[str] = mapped_column(String(16), default="VALID")
    verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    granted_permissions: Mapped[list[Any] | None] = mapped_column(JSON, default=None)
    # Background verification (API.md 6, migration 0009). `verified_at` is the last token Microsoft
    # granted; `checked_at` the last time Microsoft was asked, whatever it answered.
    checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    next_check_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    # The status last announced by an event (VALID, INVALID, EXPIRED); NULL: VALID, nothing announced.
    announced_status: Mapped[str | None] = mapped_column(String(16), default=None)
    # The smallest expiry reminder (30, 7, 1 days) sent for the current secret or certificate; NULL:
    # none. A rotation resets it.
    reminded_days_left: Mapped[int | None] = mapped_column(Integer, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
