"""SQL for console sessions."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from m365connect.accounts.models import ApiKey
from m365connect.console.models import ConsoleSession


async def add(session: AsyncSession, *, row: ConsoleSession) -> None:
    """Insert a new session."""
    session.add(row)
    await session.flush()


async def find(session: AsyncSession, *, digest: bytes) -> tuple[ConsoleSession, datetime | None] | None:
    """The session with this token digest and its API key's revocation time (None: the key is live)."""
    found = (
        await session.execute(
            select(ConsoleSession, ApiKey.revoked_at)
            .join(ApiKey, ApiKey.id == ConsoleSession.api_key_id)
            .where(ConsoleSession.token_digest == digest)
        )
    ).first()
    if found is None:
        return None
    return found[0], found[1]


async def touch(session: AsyncSession, *, session_id: int, now: datetime) -> None:
    """Record activity (the idle expiry counts from here)."""
    await session.execute(
        update(ConsoleSession).where(ConsoleSession.id == session_id).values(last_seen_at=now)
    )


async def remove(session: AsyncSession, *, digest: bytes) -> None:
    """Delete the session with this token digest, if any."""
    await session.execute(delete(ConsoleSession).where(ConsoleSession.token_digest == digest))


async def remove_expired(session: AsyncSession, *, now: datetime, idle_since: datetime) -> None:
    """Delete sessions past their absolute expiry or idle since before `idle_since`."""
    await session.execute(
        delete(ConsoleSession).where(
            or_(ConsoleSession.expires_at <= now, ConsoleSession.last_seen_at < idle_since)
        )
    )


async def set_reveal(session: AsyncSession, *, session_id: int, webhook_id: int) -> None:
    """Remember that this session may see this new subscription's secret once."""
    await session.execute(
        update(ConsoleSession).where(ConsoleSession.id == session_id).values(reveal_webhook_id=webhook_id)
    )


async def take_reveal(session: AsyncSession, *, session_id: int, webhook_id: int) -> bool:
    """Clear the session's reveal of this subscription; whether it was there (only one request wins)."""
    result = await session.execute(
        update(ConsoleSession)
        .where(ConsoleSession.id == session_id, ConsoleSession.reveal_webhook_id == webhook_id)
        .values(reveal_webhook_id=None)
    )
    return bool(getattr(result, "rowcount", 0))
