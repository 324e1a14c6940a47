"""Console sign-in sessions: a random token in an HttpOnly cookie, only its SHA-256 stored here."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, LargeBinary
from sqlalchemy.orm import Mapped, mapped_column

from m365connect.db.base import Base, IdType, UTCDateTime, utcnow


class ConsoleSession(Base):
    """A signed-in browser: which API key opened it (revoking the key ends it), and its two expiries."""

    __tablename__ = "console_sessions"

    id: Mapped[int] = mapped_column(IdType, primary_key=True, autoincrement=True)
    token_digest: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    api_key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # The absolute end (created_at + M365CONNECT_CONSOLE_SESSION_MAX_HOURS), whatever the activity.
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    # The subscription added in this session whose secret the next GET of its "added" page shows, once
    # (POST-redirect-GET without the secret in a URL); cleared by that GET.
    reveal_webhook_id: Mapped[int | None] = mapped_column(IdType, default=None)
