"""SQL for events: the per-account lock that orders them, batched inserts, cursor reads and purging."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, delete, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from m365connect.accounts.models import Account
from m365connect.events.models import Event


async def lock_account(session: AsyncSession, *, account_id: int) -> None:
    """Hold the account's row until the transaction ends, so its events commit in id order.

    PostgreSQL: `FOR NO KEY UPDATE`, which serialises event writers of one account but not the foreign-key
    checks (`FOR KEY SHARE`) of inserts into its other tables. SQLite needs nothing: one writer at a time.
    """
    if session.get_bind().dialect.name != "postgresql":
        return
    await session.execute(select(Account.id).where(Account.id == account_id).with_for_update(key_share=True))


async def insert_many(session: AsyncSession, *, rows: Sequence[dict[str, Any]]) -> None:
    """Insert event rows (column dicts) in one statement executed with many parameter sets."""
    if rows:
        # The Core table, as mailboxes.repository.insert_active does: no ORM object per row.
        await session.execute(insert(cast(Table, Event.__table__)), list(rows))


async def page_after(
    session: AsyncSession,
    *,
    account_id: int,
    after: int,
    limit: int,
    hidden: Sequence[str],
    types: Sequence[str] | None = None,
) -> Sequence[Event]:
    """The account's events with an id above `after`, oldest first, at most `limit` (only `types` when
    given)."""
    query = select(Event).where(Event.account_id == account_id, Event.id > after, Event.type.not_in(hidden))
    if types is not None:
        query = query.where(Event.type.in_(types))
    rows = await session.scalars(query.order_by(Event.id).limit(limit))
    return rows.all()


async def page_before(
    session: AsyncSession,
    *,
    account_id: int,
    before: int | None,
    limit: int,
    hidden: Sequence[str],
    types: Sequence[str] | None = None,
) -> Sequence[Event]:
    """The account's events with an id below `before` (the newest when None), newest first, at most
    `limit` (only `types` when given)."""
    query = select(Event).where(Event.account_id == account_id, Event.type.not_in(hidden))
    if before is not None:
        query = query.where(Event.id < before)
    if types is not None:
        query = query.where(Event.type.in_(types))
    rows = await session.scalars(query.order_by(Event.id.desc()).limit(limit))
    return rows.all()


async def delete_older_than(session: AsyncSession, *, older_than: datetime, batch: int) -> int:
    """Delete up to `batch` events that occurred before `older_than`, oldest first; how many went."""
    oldest = (
        select(Event.id)
        .where(Event.occurred_at < older_than)
        .order_by(Event.id)
        .limit(batch)
        .scalar_subquery()
    )
    result = await session.execute(delete(Event).where(Event.id.in_(oldest)))
    return int(getattr(result, "rowcount", 0) or 0)
