"""SQL for webhook subscriptions, their delivery log and the outbox cursor."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from m365connect.accounts.models import Account
from m365connect.events.models import Event
from m365connect.events.types import EventType
from m365connect.webhooks.models import Webhook, WebhookDelivery


async def lock_account(session: AsyncSession, *, account_id: int) -> None:
    """Serialise the account's subscription creations (the per-account limit) until the transaction ends.

    A no-op UPDATE rather than SELECT ... FOR UPDATE: SQLite ignores FOR UPDATE, and two deferred SQLite
    transactions could both count 19 and both insert (tests/webhooks, 25 concurrent creates); a write as
    the transaction's first statement takes SQLite's write lock before the count, and on PostgreSQL it
    locks the account row as FOR UPDATE would.
    """
    await session.execute(
        update(Account).where(Account.id == account_id).values(created_at=Account.created_at)
    )


async def list_for_account(session: AsyncSession, *, account_id: int) -> Sequence[Webhook]:
    """The account's subscriptions, oldest first."""
    rows = await session.scalars(select(Webhook).where(Webhook.account_id == account_id).order_by(Webhook.id))
    return rows.all()


async def count_for_account(session: AsyncSession, *, account_id: int) -> int:
    """How many subscriptions the account has."""
    count = await session.scalar(
        select(func.count()).select_from(Webhook).where(Webhook.account_id == account_id)
    )
    return int(count or 0)


async def get_for_account(session: AsyncSession, *, account_id: int, webhook_id: int) -> Webhook | None:
    """One of the account's subscriptions; None for a missing id or another account's."""
    return await session.scalar(
        select(Webhook).where(Webhook.id == webhook_id, Webhook.account_id == account_id)
    )


async def by_form_key(session: AsyncSession, *, account_id: int, form_key: str) -> Webhook | None:
    """The account's subscription added by the console form with this one-time key, if any."""
    return await session.scalar(
        select(Webhook).where(Webhook.account_id == account_id, Webhook.form_key == form_key)
    )


async def get(session: AsyncSession, *, webhook_id: int) -> Webhook | None:
    """A subscription by id, whichever account (for the background delivery)."""
    return await session.get(Webhook, webhook_id)


async def newest_event_id(session: AsyncSession, *, account_id: int) -> int:
    """The id of the account's newest event, 0 without any: a new subscription's cursor."""
    newest = await session.scalar(select(func.max(Event.id)).where(Event.account_id == account_id))
    return int(newest or 0)


async def add(session: AsyncSession, *, webhook: Webhook) -> Webhook:
    """Insert (flushed, so the id is known for sealing the secret)."""
    session.add(webhook)
    await session.flush()
    return webhook


async def delete_for_account(session: AsyncSession, *, account_id: int, webhook_id: int) -> bool:
    """Delete a subscription (its log goes with it); False when it is not the account's."""
    result = await session.execute(
        delete(Webhook).where(Webhook.id == webhook_id, Webhook.account_id == account_id)
    )
    return bool(getattr(result, "rowcount", 0))


async def disable(session: AsyncSession, *, webhook_id: int) -> None:
    """Stop deliveries to a subscription (its receiver answered 410 Gone)."""
    await session.execute(update(Webhook).where(Webhook.id == webhook_id).values(enabled=False))


async def get_event(session: AsyncSession, *, event_id: int) -> Event | None:
    """An event by id (the payload of one delivery)."""
    return await session.get(Event, event_id)


async def add_delivery(session: AsyncSession, *, delivery: WebhookDelivery) -> None:
    """Record one attempt."""
    session.add(delivery)
    await session.flush()


async def deliveries_page(
    session: AsyncSession, *, webhook_id: int, offset: int, limit: int
) -> tuple[Sequence[WebhookDelivery], int]:
    """One page of a subscription's attempts (newest first) and how many there are."""
    rows = await session.scalars(
        select(WebhookDelivery)
        .where(WebhookDelivery.webhook_id == webhook_id)
        .order_by(WebhookDelivery.id.desc())
        .offset(offset)
        .limit(limit)
    )
    total = await session.scalar(
        select(func.count()).select_from(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook_id)
    )
    return rows.all(), int(total or 0)


async def delete_deliveries_before(session: AsyncSession, *, before: datetime, limit: int) -> int:
    """Delete at most `limit` log rows attempted before `before` (oldest first); how many went."""
    oldest = (
        select(WebhookDelivery.id)
        .where(WebhookDelivery.attempted_at < before)
        .order_by(WebhookDelivery.id)
        .limit(limit)
        .scalar_subquery()
    )
    result = await session.execute(delete(WebhookDelivery).where(WebhookDelivery.id.in_(oldest)))
    return int(getattr(result, "rowcount", 0))


# ---------------------------------------------------------------------------------------------- outbox


async def enabled_for_dispatch(session: AsyncSession) -> Sequence[Webhook]:
    """Enabled subscriptions, locked for this transaction; one that another dispatcher holds is skipped
    (PostgreSQL; SQLite has one writer at a time anyway)."""
    rows = await session.scalars(
        select(Webhook)
        .where(Webhook.enabled.is_(True))
        .order_by(Webhook.id)
        .with_for_update(skip_locked=True)
    )
    return rows.all()


async def events_after(
    session: AsyncSession, *, account_id: int, after: int, limit: int
) -> Sequence[tuple[int, str]]:
    """(id, type) of the account's events after the cursor, oldest first, test events left out."""
    rows = await session.execute(
        select(Event.id, Event.type)
        .where(Event.account_id == account_id, Event.id > after, Event.type != EventType.WEBHOOK_TEST.value)
        .order_by(Event.id)
        .limit(limit)
    )
    return [(int(row.id), str(row.type)) for row in rows]


async def advance_cursor(session: AsyncSession, *, webhook_id: int, old: int, to: int) -> bool:
    """Move a subscription's cursor from `old` to `to` (compare-and-set); False when another pass moved
    it first. On SQLite this UPDATE also takes the write lock, so a concurrent pass waits here and then
    finds the cursor moved."""
    result = await session.execute(
        update(Webhook)
        .where(Webhook.id == webhook_id, Webhook.last_dispatched_event_id == old)
        .values(last_dispatched_event_id=to)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0))


# ---------------------------------------------------------------------------------- sealed secrets


async def list_secrets(session: AsyncSession) -> list[tuple[int, bytes]]:
    """(id, sealed secret) of every subscription."""
    rows = await session.execute(select(Webhook.id, Webhook.secret_ciphertext).order_by(Webhook.id))
    return [(int(row.id), bytes(row.secret_ciphertext)) for row in rows]


async def get_secret(session: AsyncSession, *, webhook_id: int) -> bytes | None:
    """The sealed secret of one subscription (None when deleted)."""
    value = await session.scalar(select(Webhook.secret_ciphertext).where(Webhook.id == webhook_id))
    return None if value is None else bytes(value)


async def replace_secret(session: AsyncSession, *, webhook_id: int, old: bytes, new: bytes) -> bool:
    """Compare-and-set of a sealed secret (rotation); False when it changed or vanished meanwhile."""
    result = await session.execute(
        update(Webhook)
        .where(Webhook.id == webhook_id, Webhook.secret_ciphertext == old)
        .values(secret_ciphertext=new)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0))


async def count_secrets(session: AsyncSession) -> int:
    """How many sealed webhook secrets the database holds."""
    return int(await session.scalar(select(func.count()).select_from(Webhook)) or 0)
