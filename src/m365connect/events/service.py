"""Recording events, always inside the transaction of the change they report (API.md 6)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from m365connect.db.base import utcnow
from m365connect.events.models import Event
from m365connect.events.types import EventType


async def record_event(
    session: AsyncSession, *, account_id: int, type: EventType, data: Mapping[str, Any]
) -> Event:
    """Add one event to the caller's transaction; it is visible exactly when the change commits.

    `data` is the API object as it is after the change, already JSON-ready (never a secret).
    """
    event = Event(account_id=account_id, type=type.value, occurred_at=utcnow(), data=dict(data))
    session.add(event)
    await session.flush()
    return event
