"""The cheapest round trip to the database, for the readiness probe."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


async def ping(session: AsyncSession) -> None:
    """Run `SELECT 1`; raises what the driver raises when the database does not answer."""
    await session.execute(text("SELECT 1"))
