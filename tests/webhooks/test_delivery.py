"""Deliveries to a local receiver: signed per Standard Webhooks, retried, logged, 410 disables, and the
SSRF rules checked again at delivery over a connection pinned to the vetted address."""

from __future__ import annotations

import ipaddress
import logging
import ssl
from datetime import datetime, timedelta
from typing import Any

import httpcore
import httpx
import pytest
import trustme
from standardwebhooks import Webhook as Verifier
from standardwebhooks.webhooks import WebhookVerificationError

from m365connect.events.service import record_event
from m365connect.events.types import EventType
from m365connect.settings import Settings
from m365connect.state import AppState
from m365connect.webhooks.delivery import DeliveryFailed, deliver, deliver_job_kind
from m365connect.webhooks.models import Webhook
from m365connect.webhooks.service import prune_delivery_log
from m365connect.webhooks.transport import PinnedBackend
from m365connect.work.ports import JobRun
from tests.factories import EVENTS, WEBHOOKS
from tests.helpers import headers
from tests.webhooks.support import (
    TEST_TIMEOUT,
    FakeResolver,
    TransactionalEnqueue,
    receiving,
    with_webhooks,
)


async def subscribe(client: httpx.AsyncClient, api_key: str, url: str, **body: Any) -> dict[str, Any]:
    response = await client.post(WEBHOOKS, json={"url": url, **body}, headers=headers(api_key))
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def new_event(state: AppState, webhook_id: int, type: EventType = EventType.MAILBOX_FAILING) -> int:
    """An event of the subscription's account, committed."""
    async with state.sessions() as session:
        webhook = await session.get(Webhook, webhook_id)
        assert webhook is not None
        account_id = webhook.account_id
    async with state.transactions.begin() as session:
        event = await record_event(
            session, account_id=account_id, type=type, data={"id": 4, "health": {"state": "FAILING"}}
        )
    return event.id


async def log_of(client: httpx.AsyncClient, api_key: str, webhook_id: int) -> list[dict[str, Any]]:
    response = await client.get(f"{WEBHOOKS}/{webhook_id}/deliveries?page=0", headers=headers(api_key))
    assert response.status_code == 200, response.text
    content: list[dict[str, Any]] = response.json()["content"]
    return content


async def enabled(state: AppState, webhook_id: int) -> bool:
    async with state.sessions() as session:
        webhook = await session.get(Webhook, webhook_id)
        assert webhook is not None
        return webhook.enabled


def attempts(state: AppState) -> dict[str, float]:
    """m365connect_webhook_deliveries_total by outcome."""
    registry = state.metrics.registry
    return {
        outcome: registry.get_sample_value("m365connect_webhook_deliveries_total", {"outcome": outcome}) or 0
        for outcome in ("delivered", "failed", "gone", "refused")
    }


def verified(secret: str, request: Any) -> Any:
    """The body as a Standard Webhooks verifier accepts it (raises if it does not)."""
    return Verifier(secret).verify(request.body, request.headers)


async def test_a_receiver_that_fails_then_times_out_then_recovers_gets_the_signed_event(
    hooks_client: httpx.AsyncClient, hooks_state: AppState, api_key: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with receiving() as receiver:
        receiver.script.extend([500, ("hang",)])
        hook = await subscribe(hooks_client, api_key, receiver.url())
        event_id = await new_event(hooks_state, hook["id"])
        for attempt in (1, 2):
            with pytest.raises(DeliveryFailed):
                await deliver(hooks_state, subscription_id=hook["id"], event_id=event_id, attempt=attempt)
        await deliver(hooks_state, subscription_id=hook["id"], event_id=event_id, attempt=3)
    assert len(receiver.received) == 3
    for request in receiver.received:
        assert request.method == "POST"
        assert request.target == "/hook"
        assert request.headers["webhook-id"] == str(event_id)  # the same on every retry
        assert request.headers["content-type"] == "application/json"
        assert request.headers["user-agent"] == "m365connect-webhooks/0.1"
        assert int(request.headers["content-length"]) == len(request.body)
        body = verified(hook["secret"], request)
        assert body == {
            "id": event_id,
            "type": "mailbox.failing",
            "occurred_at": body["occurred_at"],
            "data": {"id": 4, "health": {"state": "FAILING"}},
        }
        assert body["occurred_at"].endswith("Z")
    listed = await hooks_client.get(f"{EVENTS}?after={event_id - 1}&limit=1", headers=headers(api_key))
    assert listed.json()["events"] == [body]  # the very object GET /events answers
    log = await log_of(hooks_client, api_key, hook["id"])
    assert [(row["event_id"], row["status_code"]) for row in log] == [
        (event_id, 200),
        (event_id, None),
        (event_id, 500),
    ]
    assert [row["error"] for row in log] == [None, f"no answer within {TEST_TIMEOUT:g} s", "HTTP 500"]
    assert all(row["attempted_at"].endswith("Z") and row["duration_ms"] >= 0 for row in log)
    assert log[1]["duration_ms"] >= TEST_TIMEOUT * 1000 * 0.9
    assert attempts(hooks_state) == {"delivered": 1, "failed": 2, "gone": 0, "refused": 0}
    timed = hooks_state.metrics.registry.get_sample_value(
        "m365connect_webhook_delivery_duration_seconds_count"
    )
    assert timed == 3
    signatures = [request.headers["webhook-signature"] for request in receiver.received]
    logged = caplog.text
    assert hook["secret"] not in logged
    assert hook["secret"].removeprefix("whsec_") not in logged
    assert not any(signature.removeprefix("v1,") in logged for signature in signatures)


async def test_a_tampered_body_or_another_secret_fails_verification(
    hooks_client: httpx.AsyncClient, hooks_state: AppState, api_key: str
) -> None:
    async with receiving() as receiver:
        hook = await subscribe(hooks_client, api_key, receiver.url())
        other = await subscribe(hooks_client, api_key, receiver.url())
        event_id = await new_event(hooks_state, hook["id"])
        await deliver(hooks_state, subscription_id=hook["id"], event_id=event_id, attempt=1)
    (request,) = receiver.received
    verified(hook["secret"], request)
    tampered = request.body.replace(b"FAILING", b"OK")
    assert tampered != request.body
    with pytest.raises(WebhookVerificationError):
        Verifier(hook["secret"]).verify(tampered, request.headers)
    with pytest.raises(WebhookVerificationError):
        verified(other["secret"], request)


async def test_410_disables_the_subscription_and_later_jobs_end_quietly(
    hooks_client: httpx.AsyncClient, hooks_state: AppState, api_key: str
) -> None:
    async with receiving() as receiver:
        receiver.script.append(410)
        hook = await subscribe(hooks_client, api_key, receiver.url())
        first, second = await new_event(hooks_state, hook["id"]), await new_event(hooks_state, hook["id"])
        await deliver(
            hooks_state, subscription_id=hook["id"], event_id=first, attempt=1
        )  # no raise: not retried
        assert not await enabled(hooks_state, hook["id"])
        await deliver(hooks_state, subscription_id=hook["id"], event_id=second, attempt=1)
    assert len(receiver.received) == 1
    listed = await hooks_client.get(f"{WEBHOOKS}/{hook['id']}", headers=headers(api_key))
    assert listed.json()["enabled"] is False
    log = await log_of(hooks_client, api_key, hook["id"])
    assert [(row["status_code"], row["error"]) for row in log] == [
        (410, "HTTP 410: the receiver is gone, subscription disabled")
    ]
    assert attempts(hooks_state) == {"delivered": 0, "failed": 0, "gone": 1, "refused": 0}


async def test_a_deleted_subscription_or_a_vanished_event_ends_the_job_quietly(
    hooks_client: httpx.AsyncClient, hooks_state: AppState, api_key: str
) -> None:
    async with receiving() as receiver:
        hook = await subscribe(hooks_client, api_key, receiver.url())
        event_id = await new_event(hooks_state, hook["id"])
        await deliver(hooks_state, subscription_id=hook["id"], event_id=event_id + 1000, attempt=1)
        await hooks_client.delete(f"{WEBHOOKS}/{hook['id']}", headers=headers(api_key))
        await deliver(hooks_state, subscription_id=hook["id"], event_id=event_id, attempt=1)
    assert receiver.received == []


async def test_a_redirect_is_a_failed_attempt_and_is_not_followed(
    hooks_client: httpx.AsyncClient, hooks_state: AppState, api_key: str
) -> None:
    async with receiving() as receiver:
        receiver.script.append(("redirect", "http://169.254.169.254/latest/meta-data/"))
        hook = await subscribe(hooks_client, api_key, receiver.url())
        event_id = await new_event(hooks_state, hook["id"])
        with pytest.raises(DeliveryFailed, match="redirects are not followed"):
            await deliver(hooks_state, subscription_id=hook["id"], event_id=event_id, attempt=1)
    assert len(receiver.received) == 1
    log = await log_of(hooks_client, api_key, hook["id"])
    assert [(row["status_code"], row["error"]) for row in log] == [
        (302, "HTTP 302: redirects are not followed")
    ]


@pytest.mark.parametrize(
    ("host", "answers", "reason"),
    [
        ("127.0.0.1", [], "loopback"),
        ("[::1]", [], "loopback"),
        ("ten.example.com", [["10.0.0.5"]], "private"),
        # Refused even where private networks are allowed, so it answers it only at delivery.
        ("metadata.example.com", [["127.0.0.1"], ["169.254.169.254"]], "metadata"),
    ],
)
async def test_non_public_addresses_are_refused_at_delivery(
    hooks_client: httpx.AsyncClient,
    hooks_state: AppState,
    resolver: FakeResolver,
    api_key: str,
    host: str,
    answers: list[list[str]],
    reason: str,
) -> None:
    """Saved while private networks were allowed; the operator then turned that off."""
    if answers:
        resolver.set(host, *answers)
    hook = await subscribe(hooks_client, api_key, f"https://{host}/hook")
    strict = with_webhooks(hooks_state, allow_private=False)
    event_id = await new_event(strict, hook["id"])
    with pytest.raises(DeliveryFailed, match=reason):
        await deliver(strict, subscription_id=hook["id"], event_id=event_id, attempt=1)
    (row,) = await log_of(hooks_client, api_key, hook["id"])
    assert row["status_code"] is None
    assert attempts(strict) == {"delivered": 0, "failed": 0, "gone": 0, "refused": 1}
    assert row["error"].startswith("refused: ")
    assert reason in row["error"]


async def test_a_name_that_rebinds_to_a_private_address_after_the_check_is_refused_at_delivery(
    strict_client: httpx.AsyncClient, strict_state: AppState, resolver: FakeResolver, api_key: str
) -> None:
    resolver.set("rebind.example.com", ["93.184.215.14"], ["127.0.0.1"])
    hook = await subscribe(strict_client, api_key, "https://rebind.example.com/hook")  # public when checked
    event_id = await new_event(strict_state, hook["id"])
    async with receiving() as receiver:
        with pytest.raises(DeliveryFailed, match=r"rebind\.example\.com resolves to 127\.0\.0\.1"):
            await deliver(strict_state, subscription_id=hook["id"], event_id=event_id, attempt=1)
    assert receiver.received == []
    assert resolver.asked == ["rebind.example.com", "rebind.example.com"]


@pytest.fixture(scope="module")
def receiver_ca() -> trustme.CA:
    return trustme.CA()


async def test_tls_goes_to_the_vetted_address_with_the_name_in_sni_and_host(
    hooks_client: httpx.AsyncClient,
    hooks_state: AppState,
    resolver: FakeResolver,
    api_key: str,
    receiver_ca: trustme.CA,
) -> None:
    """hooks.example.test exists only in the fake resolver: the connection reaches the receiver because
    it goes to the address the check vetted, and TLS verifies the certificate against the name."""
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    receiver_ca.issue_cert("hooks.example.test").configure_cert(server_tls)
    trusting = ssl.create_default_context()
    receiver_ca.configure_trust(trusting)
    state = with_webhooks(hooks_state, ssl_context=trusting)
    resolver.set("hooks.example.test", ["127.0.0.1"])
    resolver.set("wrong-name.example.test", ["127.0.0.1"])
    async with receiving(tls=server_tls) as receiver:
        hook = await subscribe(hooks_client, api_key, receiver.url(host="hooks.example.test", scheme="https"))
        event_id = await new_event(state, hook["id"])
        await deliver(state, subscription_id=hook["id"], event_id=event_id, attempt=1)
        other = await subscribe(
            hooks_client, api_key, receiver.url(host="wrong-name.example.test", scheme="https")
        )
        with pytest.raises(DeliveryFailed, match="could not connect"):
            await deliver(state, subscription_id=other["id"], event_id=event_id, attempt=1)
    assert len(receiver.received) == 1
    assert receiver.received[0].headers["host"] == f"hooks.example.test:{receiver.port}"
    verified(hook["secret"], receiver.received[0])


async def test_the_test_route_stores_a_test_event_and_queues_its_delivery_to_that_subscription_only(
    hooks_client: httpx.AsyncClient,
    hooks_state: AppState,
    enqueue: TransactionalEnqueue,
    api_key: str,
) -> None:
    async with receiving() as receiver:
        hook = await subscribe(hooks_client, api_key, receiver.url())
        await subscribe(hooks_client, api_key, receiver.url())
        response = await hooks_client.post(f"{WEBHOOKS}/{hook['id']}/test", headers=headers(api_key))
        assert response.status_code == 202, response.text
        event_id = response.json()["event_id"]
        stream = await hooks_client.get(f"{EVENTS}?after=0", headers=headers(api_key))
        assert stream.json()["events"] == []  # a test event is never in the account's stream
        (job,) = enqueue.jobs
        assert (job.kind, job.payload, job.dedupe_key) == (
            "webhook.deliver",
            {"subscription_id": hook["id"], "event_id": event_id},
            f"webhook:{hook['id']}:{event_id}",
        )
        await deliver_job_kind(hooks_state).handler(JobRun(job_id=1, kind=job.kind, attempt=1), job.payload)
    (request,) = receiver.received
    body = verified(hook["secret"], request)
    assert (body["id"], body["type"], body["data"]) == (event_id, "webhook.test", {"webhook_id": hook["id"]})


def test_the_job_kind_retries_on_the_configured_schedule(settings: Settings, state: AppState) -> None:
    assert deliver_job_kind(state).retry_delays == (5, 300, 1800, 7200, 18000, 36000, 36000)
    custom = Settings(**{**settings.model_dump(), "webhook_retry_delays": "1, 2.5,60"})
    assert custom.webhook_retry_schedule == (1.0, 2.5, 60.0)
    assert Settings(**{**settings.model_dump(), "webhook_retry_delays": ""}).webhook_retry_schedule == ()
    for wrong in ("5,x", "-1", "nan", "700000"):
        with pytest.raises(ValueError, match="seconds"):
            Settings(**{**settings.model_dump(), "webhook_retry_delays": wrong})


async def test_the_pinned_backend_reaches_only_the_vetted_address_and_port() -> None:
    """Whatever name and port httpcore asks for, the connection goes to the vetted pair or nowhere."""
    async with receiving() as receiver:
        pinned = PinnedBackend([ipaddress.ip_address("127.0.0.1")], receiver.port)
        stream = await pinned.connect_tcp("elsewhere.example.com", receiver.port, timeout=1)
        await stream.write(b"POST /x HTTP/1.1\r\nHost: elsewhere.example.com\r\nContent-Length: 0\r\n\r\n")
        assert (await stream.read(64)).startswith(b"HTTP/1.1 200")
        await stream.aclose()
        with pytest.raises(httpcore.ConnectError, match="not the vetted port"):
            await pinned.connect_tcp("elsewhere.example.com", receiver.port + 1, timeout=1)
    assert [r.headers["host"] for r in receiver.received] == ["elsewhere.example.com"]


async def test_the_delivery_log_is_pruned_after_thirty_days(
    hooks_client: httpx.AsyncClient, hooks_state: AppState, api_key: str
) -> None:
    async with receiving() as receiver:
        receiver.script.extend([500, 500])
        hook = await subscribe(hooks_client, api_key, receiver.url())
        event_id = await new_event(hooks_state, hook["id"])
        for attempt in (1, 2):
            with pytest.raises(DeliveryFailed):
                await deliver(hooks_state, subscription_id=hook["id"], event_id=event_id, attempt=attempt)
        await deliver(hooks_state, subscription_id=hook["id"], event_id=event_id, attempt=3)
    log = await log_of(hooks_client, api_key, hook["id"])
    newest = max(datetime.fromisoformat(row["attempted_at"].replace("Z", "+00:00")) for row in log)
    async with hooks_state.transactions.begin() as session:
        assert await prune_delivery_log(session, now=newest + timedelta(days=29)) == 0
    async with hooks_state.transactions.begin() as session:
        assert await prune_delivery_log(session, now=newest + timedelta(days=31), limit=2) == 2
    assert len(await log_of(hooks_client, api_key, hook["id"])) == 1
    async with hooks_state.transactions.begin() as session:
        assert await prune_delivery_log(session, now=newest + timedelta(days=31)) == 1
    assert await log_of(hooks_client, api_key, hook["id"]) == []
