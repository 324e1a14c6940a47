"""Webhook subscriptions: create (secret shown once), read, change, delete, the log, the test event."""

from __future__ import annotations

import logging
import math
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from m365connect.codes import ErrorCode
from m365connect.crypto import SecretBox
from m365connect.errors import BadRequest, NotFound, ValidationCodeError
from m365connect.events.service import record_event
from m365connect.events.types import SUBSCRIBABLE, EventType
from m365connect.mailboxes.schemas import PaginationData
from m365connect.webhooks import repository, sealing
from m365connect.webhooks.addresses import HostResolver, UrlRefused, vet
from m365connect.webhooks.models import Webhook, WebhookDelivery
from m365connect.webhooks.schemas import (
    DeliveryPage,
    DeliveryRead,
    WebhookCreate,
    WebhookCreated,
    WebhookRead,
    WebhookUpdate,
)
from m365connect.wire import iso_z
from m365connect.work.ports import Enqueue

logger = logging.getLogger("m365connect.webhooks")

# Enough for one receiver per team or environment; a list of event types goes to one URL. Each subscription
# costs a dispatch query per outbox pass, so the bound also bounds that work (docs/decisions.md).
MAX_WEBHOOKS_PER_ACCOUNT = 20
DELIVERIES_PAGE_SIZE = 50
# The delivery log is kept as long as the events it names (API.md 6: at least 30 days).
DELIVERY_LOG_DAYS = 30
DELIVER_KIND = "webhook.deliver"


@dataclass(frozen=True)
class WebhookServices:
    """What the webhook routes and deliveries need besides the database: DNS, the SSRF switch, TLS trust,
    the bound on one attempt, and the work engine's enqueue."""

    box: SecretBox
    resolver: HostResolver
    allow_private: bool
    ssl_context: ssl.SSLContext
    timeout: float
    enqueue: Enqueue


def dedupe_key(*, webhook_id: int, event_id: int) -> str:
    """One pending delivery job per subscription and event."""
    return f"webhook:{webhook_id}:{event_id}"


def to_read(webhook: Webhook) -> WebhookRead:
    """The wire shape of a subscription (never its secret)."""
    return WebhookRead(
        id=webhook.id,
        url=webhook.url,
        event_types=webhook.event_types,
        description=webhook.description,
        enabled=webhook.enabled,
        created_at=iso_z(webhook.created_at) or "",
    )


def _event_types(names: Sequence[str] | None) -> list[str] | None:
    """Sorted, each once; 422 UNKNOWN_EVENT_TYPE for a name that is not a subscribable type."""
    if names is None:
        return None
    known = {str(item) for item in SUBSCRIBABLE}
    if any(name not in known for name in names):
        raise ValidationCodeError(ErrorCode.UNKNOWN_EVENT_TYPE)
    return sorted(set(names))


async def _vetted_url(services: WebhookServices, url: str) -> str:
    try:
        await vet(url, resolver=services.resolver, allow_private=services.allow_private)
    except UrlRefused as exc:
        logger.info("webhook.url.refused", extra={"reason": exc.reason})
        raise ValidationCodeError(ErrorCode.INVALID_WEBHOOK_URL) from None
    return url


async def list_webhooks(session: AsyncSession, *, account_id: int) -> Sequence[Webhook]:
    """The account's subscriptions, oldest first."""
    return await repository.list_for_account(session, account_id=account_id)


async def get_webhook(session: AsyncSession, *, account_id: int, webhook_id: int) -> Webhook:
    """One of the account's subscriptions, or 404."""
    webhook = await repository.get_for_account(session, account_id=account_id, webhook_id=webhook_id)
    if webhook is None:
        raise NotFound()
    return webhook


async def create_webhook(
    session: AsyncSession,
    services: WebhookServices,
    *,
    account_id: int,
    data: WebhookCreate,
    form_key: str | None = None,
) -> WebhookCreated:
    """Save a subscription whose URL passed the SSRF rules; it receives events from now on.

    `form_key`: the console form's one-time key. The same form posted again (a double click) with the same
    URL, event types and description answers the subscription it added; with other values (the form
    edited after going back) it adds a new subscription, without the key."""
    event_types = _event_types(data.event_types)
    url = await _vetted_url(services, data.url)
    # Serialises the account's creations: a second post of the form waits for the first one's commit.
    await repository.lock_account(session, account_id=account_id)
    if form_key is not None:
        added = await repository.by_form_key(session, account_id=account_id, form_key=form_key)
        if added is not None:
            if (added.url, added.event_types, added.description) == (url, event_types, data.description):
                secret = sealing.open_secret(services.box, added)
                return WebhookCreated(**to_read(added).model_dump(), secret=secret)
            form_key = None
    if await repository.count_for_account(session, account_id=account_id) >= MAX_WEBHOOKS_PER_ACCOUNT:
        raise ValidationCodeError(ErrorCode.TOO_MANY_WEBHOOKS)
    webhook = Webhook(
        account_id=account_id,
        url=url,
        event_types=event_types,
        description=data.description,
        enabled=True,
        secret_ciphertext=b"",
        last_dispatched_event_id=await repository.newest_event_id(session, account_id=account_id),
        form_key=form_key,
    )
    await repository.add(session, webhook=webhook)
    secret = sealing.new_secret()
    sealing.seal(services.box, webhook, secret)
    await session.flush()
    return WebhookCreated(**to_read(webhook).model_dump(), secret=secret)


async def reveal_secret(
    session: AsyncSession, services: WebhookServices, *, account_id: int, webhook_id: int
) -> str:
    """A subscription's signing secret, for the console's one-time answer to adding it (the caller makes
    sure it is shown once: see console.service.take_reveal); 404 for another account's."""
    webhook = await get_webhook(session, account_id=account_id, webhook_id=webhook_id)
    return sealing.open_secret(services.box, webhook)


def _check_update(data: WebhookUpdate) -> None:
    if not data.model_fields_set:
        raise BadRequest("Send at least one of 'url', 'event_types', 'description', 'enabled'")
    for field in ("url", "enabled"):
        if field in data.model_fields_set and getattr(data, field) is None:
            raise BadRequest(f"Field '{field}' must not be null")


async def update_webhook(
    session: AsyncSession,
    services: WebhookServices,
    *,
    account_id: int,
    webhook_id: int,
    data: WebhookUpdate,
) -> Webhook:
    """Change the fields sent. Enabling a disabled subscription starts it at the newest event: what
    happened while it was off is in GET /events, not replayed to the URL."""
    _check_update(data)
    webhook = await get_webhook(session, account_id=account_id, webhook_id=webhook_id)
    fields = data.model_fields_set
    if "event_types" in fields:
        webhook.event_types = _event_types(data.event_types)
    if data.url is not None:
        webhook.url = await _vetted_url(services, data.url)
    if "description" in fields:
        webhook.description = data.description
    if data.enabled is not None:
        if data.enabled and not webhook.enabled:
            webhook.last_dispatched_event_id = await repository.newest_event_id(
                session, account_id=account_id
            )
        webhook.enabled = data.enabled
    await session.flush()
    return webhook


async def delete_webhook(session: AsyncSession, *, account_id: int, webhook_id: int) -> None:
    """Delete a subscription; deliveries still queued for it end quietly."""
    if not await repository.delete_for_account(session, account_id=account_id, webhook_id=webhook_id):
        raise NotFound()


async def deliveries(session: AsyncSession, *, account_id: int, webhook_id: int, page: int) -> DeliveryPage:
    """Page `page` (0-based) of the subscription's delivery attempts, newest first."""
    await get_webhook(session, account_id=account_id, webhook_id=webhook_id)
    rows, total = await repository.deliveries_page(
        session, webhook_id=webhook_id, offset=page * DELIVERIES_PAGE_SIZE, limit=DELIVERIES_PAGE_SIZE
    )
    return DeliveryPage(
        content=[_delivery_read(row) for row in rows],
        pagination_data=PaginationData(
            total_elements=total,
            total_pages=math.ceil(total / DELIVERIES_PAGE_SIZE),
            current_page_number=page + 1,
            page_size=DELIVERIES_PAGE_SIZE,
        ),
    )


async def prune_delivery_log(session: AsyncSession, *, now: datetime, limit: int = 10_000) -> int:
    """Delete up to `limit` delivery log rows older than DELIVERY_LOG_DAYS (a periodic task); how many."""
    before = now - timedelta(days=DELIVERY_LOG_DAYS)
    return await repository.delete_deliveries_before(session, before=before, limit=limit)


def _delivery_read(row: WebhookDelivery) -> DeliveryRead:
    return DeliveryRead(
        event_id=row.event_id,
        attempted_at=iso_z(row.attempted_at) or "",
        status_code=row.status_code,
        error=row.error,
        duration_ms=row.duration_ms,
    )


async def send_test(
    session: AsyncSession, services: WebhookServices, *, account_id: int, webhook_id: int
) -> int:
    """Store a `webhook.test` event and queue its delivery to this subscription only; the event's id."""
    webhook = await get_webhook(session, account_id=account_id, webhook_id=webhook_id)
    event = await record_event(
        session, account_id=account_id, type=EventType.WEBHOOK_TEST, data={"webhook_id": webhook.id}
    )
    await services.enqueue(
        session,
        DELIVER_KIND,
        {"subscription_id": webhook.id, "event_id": event.id},
        dedupe_key=dedupe_key(webhook_id=webhook.id, event_id=event.id),
    )
    return event.id
