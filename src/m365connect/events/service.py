"""Recording events, always inside the transaction of the change they report (API.md 6).

The ordering rule: an event's id must never become visible after a larger id of the same account, or a
reader that moved its cursor past the larger one would never see it. Ids come from a sequence, which hands
them out in insert order, not commit order; so recording first locks the account's row
(events.repository.lock_account) and the lock is held until the transaction ends: per account, inserting
and committing happen one transaction at a time, in id order. Hence the rule for callers: **record events
last in a transaction** (just before it commits), so the lock is held for as short a time as possible and
nothing that may wait on another transaction (a unique index, a row lock) happens while holding it
(docs/decisions.md, "Events commit in id order per account").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from m365connect.db.base import utcnow
from m365connect.events import repository
from m365connect.events.models import Event
from m365connect.events.schemas import EventPage, EventRead
from m365connect.events.types import EventType
from m365connect.wire import iso_z

# Never in an account's stream: delivered only to the subscription that asked for it.
HIDDEN_TYPES = (EventType.WEBHOOK_TEST.value,)
MIN_RETENTION_DAYS = 30
PURGE_BATCH = 1000


async def record_event(
    session: AsyncSession, *, account_id: int, type: EventType, data: Mapping[str, Any]
) -> Event:
    """Add one event to the caller's transaction; it is visible exactly when the change commits.

    `data` is the API object as it is after the change, already JSON-ready (never a secret). Call it last
    in the transaction: it locks the account until the commit (module docstring).
    """
    await session.flush()  # the change itself first: the lock is then the transaction's last wait
    await repository.lock_account(session, account_id=account_id)
    event = Event(account_id=account_id, type=type.value, occurred_at=utcnow(), data=dict(data))
    session.add(event)
    await session.flush()
    return event


async def record_events(
    session: AsyncSession, *, account_id: int, events: Sequence[tuple[EventType, Mapping[str, Any]]]
) -> None:
    """Add many events of one account in one statement (a bulk connection's `mailbox.connected`s)."""
    if not events:
        return
    await session.flush()  # the change itself first: the lock is then the transaction's last wait
    await repository.lock_account(session, account_id=account_id)
    now = utcnow()
    await repository.insert_many(
        session,
        rows=[
            {"account_id": account_id, "type": type.value, "occurred_at": now, "data": dict(data)}
            for type, data in events
        ],
    )


def to_read(event: Event) -> EventRead:
    """The wire shape of an event."""
    return EventRead(
        id=event.id, type=event.type, occurred_at=iso_z(event.occurred_at) or "", data=event.data
    )


async def page_after(
    session: AsyncSession, *, account_id: int, after: int, limit: int, types: Sequence[str] | None = None
) -> EventPage:
    """The account's events after the cursor, oldest first; `next_after` is the last id (or `after`).
    With `types`, only events of those types."""
    rows = await repository.page_after(
        session, account_id=account_id, after=after, limit=limit, hidden=HIDDEN_TYPES, types=types
    )
    return EventPage(events=[to_read(row) for row in rows], next_after=rows[-1].id if rows else after)


async def page_before(
    session: AsyncSession,
    *,
    account_id: int,
    before: int | None,
    limit: int,
    types: Sequence[str] | None = None,
) -> list[EventRead]:
    """The account's events before the cursor (from the newest when None), newest first (the console
    reads backwards from the newest). With `types`, only events of those types."""
    rows = await repository.page_before(
        session, account_id=account_id, before=before, limit=limit, hidden=HIDDEN_TYPES, types=types
    )
    return [to_read(row) for row in rows]


async def purge_events(session: AsyncSession, *, older_than: datetime, batch: int = PURGE_BATCH) -> int:
    """Delete every event that occurred before `older_than`, committing after each `batch` rows (no long
    lock and no huge transaction after a long pause); how many were deleted."""
    deleted = 0
    while True:
        count = await repository.delete_older_than(session, older_than=older_than, batch=batch)
        await session.commit()
        deleted += count
        if count < batch:
            return deleted


def retention_cutoff(*, retention_days: int, now: datetime | None = None) -> datetime:
    """The instant before which events may be purged; never less than the 30 days the API promises."""
    return (now or utcnow()) - timedelta(days=max(retention_days, MIN_RETENTION_DAYS))
