"""One delivery attempt of one event to one subscription: the job `webhook.deliver` runs this.

Signed per Standard Webhooks with the maintained `standardwebhooks` package (docs/decisions.md); the URL is
vetted again and the connection pinned to the vetted address (webhooks/transport.py). One row per attempt
in the delivery log. A 2xx is delivered; 410 disables the subscription; anything else raises
DeliveryFailed so the work engine tries again after M365CONNECT_WEBHOOK_RETRY_DELAYS. No database
transaction is open while the receiver answers (up to M365CONNECT_WEBHOOK_TIMEOUT).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from standardwebhooks import Webhook as Signer

from m365connect.crypto import SecretBoxError
from m365connect.db.base import utcnow
from m365connect.events.service import to_read as event_read
from m365connect.webhooks import repository, sealing
from m365connect.webhooks.addresses import UrlRefused, vet
from m365connect.webhooks.models import Webhook, WebhookDelivery
from m365connect.webhooks.service import DELIVER_KIND
from m365connect.webhooks.transport import Outcome, post
from m365connect.work.ports import JobKind, JobRun, Payload

if TYPE_CHECKING:
    from m365connect.state import AppState

logger = logging.getLogger("m365connect.webhooks")


class DeliveryFailed(Exception):
    """The attempt did not deliver; the engine retries on the kind's schedule. The message is the log's
    short reason (never the secret, the signature or the body)."""


def signed_headers(*, secret: str, event_id: int, body: str, at: datetime) -> list[tuple[str, str]]:
    """`webhook-id` (the event id, the same on every retry), `webhook-timestamp`, `webhook-signature`."""
    signature = Signer(secret).sign(msg_id=str(event_id), timestamp=at, data=body)
    return [
        ("webhook-id", str(event_id)),
        ("webhook-timestamp", str(int(at.timestamp()))),
        ("webhook-signature", signature),
    ]


def webhook_event_id(event_data: dict[str, object]) -> int:
    """The event's id, which is the delivery's `webhook-id`."""
    value = event_data["id"]
    assert isinstance(value, int)
    return value


def body_of(event_data: dict[str, object]) -> str:
    """The event JSON exactly as signed and sent."""
    return json.dumps(event_data, separators=(",", ":"), ensure_ascii=False)


async def deliver(state: AppState, *, subscription_id: int, event_id: int, attempt: int) -> None:
    """Attempt to deliver event `event_id` to subscription `subscription_id` once (see the module doc)."""
    async with state.sessions() as session:
        webhook = await repository.get(session, webhook_id=subscription_id)
        event = await repository.get_event(session, event_id=event_id)
    context = {"webhook_id": subscription_id, "event_id": event_id, "attempt": attempt}
    if webhook is None or not webhook.enabled:
        logger.info(
            "webhook.delivery.dropped", extra={**context, "reason": "subscription deleted or disabled"}
        )
        return
    if event is None or event.account_id != webhook.account_id:
        logger.warning("webhook.delivery.dropped", extra={**context, "reason": "event no longer stored"})
        return
    # The very serialisation GET /events answers (one function for both).
    outcome = await _attempt(state, webhook, event_data=event_read(event).model_dump(mode="json"))
    async with state.transactions.begin() as session:
        await repository.add_delivery(
            session,
            delivery=WebhookDelivery(
                webhook_id=subscription_id,
                event_id=event_id,
                attempted_at=utcnow(),
                status_code=outcome.status_code,
                error=outcome.error,
                duration_ms=outcome.duration_ms,
            ),
        )
        if outcome.status_code == 410:
            await repository.disable(session, webhook_id=subscription_id)
    state.metrics.webhooks.attempted(outcome.label, duration_ms=outcome.duration_ms if outcome.sent else None)
    fields = {**context, "status_code": outcome.status_code, "duration_ms": outcome.duration_ms}
    if outcome.delivered:
        logger.info("webhook.delivery.delivered", extra=fields)
    elif outcome.status_code == 410:
        logger.warning("webhook.subscription.disabled", extra={**fields, "reason": outcome.error})
    else:
        logger.info("webhook.delivery.failed", extra={**fields, "reason": outcome.error})
        raise DeliveryFailed(outcome.error or "not delivered")


async def _attempt(state: AppState, webhook: Webhook, *, event_data: dict[str, object]) -> Outcome:
    """Open the secret, vet the URL again, sign, POST; any refusal is an Outcome without a status."""
    services = state.webhooks
    try:
        secret = sealing.open_secret(state.box, webhook)
    except SecretBoxError as exc:
        # The reason names a key id at most, never a key or a secret (crypto.py).
        logger.warning("webhook.secret.unreadable", extra={"webhook_id": webhook.id, "reason": str(exc)})
        return Outcome(
            status_code=None, error="the signing secret cannot be decrypted", duration_ms=0, sent=False
        )
    try:
        target, addresses = await vet(
            webhook.url, resolver=services.resolver, allow_private=services.allow_private
        )
    except UrlRefused as exc:
        return Outcome(
            status_code=None, error=f"refused: {exc.reason}", duration_ms=0, sent=False, refused=True
        )
    body = body_of(event_data)
    headers = signed_headers(
        secret=secret, event_id=webhook_event_id(event_data), body=body, at=datetime.now(UTC)
    )
    return await post(
        target,
        addresses,
        url=webhook.url,
        body=body.encode(),
        headers=headers,
        ssl_context=services.ssl_context,
        seconds=services.timeout,
    )


def deliver_job_kind(state: AppState) -> JobKind:
    """The job kind the integrator registers: `webhook.deliver` on WEBHOOK_RETRY_DELAYS."""

    async def handler(run: JobRun, payload: Payload) -> None:
        await deliver(
            state,
            subscription_id=int(payload["subscription_id"]),
            event_id=int(payload["event_id"]),
            attempt=run.attempt,
        )

    return JobKind(name=DELIVER_KIND, handler=handler, retry_delays=state.settings.webhook_retry_schedule)
