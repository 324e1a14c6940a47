"""The outbox: each event queued once per subscription that wants it, the cursor moving in the same
transaction as the jobs, test events never dispatched."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from m365connect.events.service import record_event
from m365connect.events.types import EventType
from m365connect.state import AppState
from m365connect.webhooks.dispatch import dispatch
from m365connect.webhooks.models import Webhook
from tests.factories import WEBHOOKS
from tests.helpers import headers
from tests.webhooks.support import FakeResolver, TransactionalEnqueue

URL = "https://hooks.example.com/hook"


class Boom(Exception):
    """Raised to roll a transaction back."""


async def subscribe(client: httpx.AsyncClient, api_key: str, **body: Any) -> int:
    response = await client.post(WEBHOOKS, json={"url": URL, **body}, headers=headers(api_key))
    assert response.status_code == 201, response.text
    webhook_id: int = response.json()["id"]
    return webhook_id


async def account_of(state: AppState, webhook_id: int) -> int:
    async with state.sessions() as session:
        webhook = await session.get(Webhook, webhook_id)
        assert webhook is not None
        return webhook.account_id


async def events(state: AppState, account_id: int, *types: EventType) -> list[int]:
    ids = []
    async with state.transactions.begin() as session:
        for type in types:
            ids.append((await record_event(session, account_id=account_id, type=type, data={})).id)
    return ids


async def run(state: AppState, enqueue: TransactionalEnqueue, *, limit: int = 100) -> int:
    async with state.transactions.begin() as session:
        return await dispatch(session, enqueue, limit=limit)


def queued(enqueue: TransactionalEnqueue) -> list[tuple[int, int]]:
    return [(job.payload["subscription_id"], job.payload["event_id"]) for job in enqueue.jobs]


@pytest.fixture(autouse=True)
def public_name(resolver: FakeResolver) -> None:
    resolver.set("hooks.example.com", ["93.184.215.14"])


async def test_each_event_is_queued_once_per_subscription_by_type(
    hooks_client: httpx.AsyncClient,
    hooks_state: AppState,
    enqueue: TransactionalEnqueue,
    api_key: str,
    other_api_key: str,
) -> None:
    every = await subscribe(hooks_client, api_key)
    failing = await subscribe(hooks_client, api_key, event_types=["mailbox.failing"])
    theirs = await subscribe(hooks_client, other_api_key)
    mine, other = await account_of(hooks_state, every), await account_of(hooks_state, theirs)
    a1, a2, a3 = await events(
        hooks_state, mine, EventType.MAILBOX_FAILING, EventType.CREDENTIAL_CREATED, EventType.WEBHOOK_TEST
    )
    (b1,) = await events(hooks_state, other, EventType.MAILBOX_RECOVERED)
    assert (
        await run(hooks_state, enqueue) == 2 + 2 + 1
    )  # events read: each subscription's, test events left out
    assert sorted(queued(enqueue)) == sorted([(every, a1), (every, a2), (failing, a1), (theirs, b1)])
    assert all(job.kind == "webhook.deliver" for job in enqueue.jobs)
    assert {job.dedupe_key for job in enqueue.jobs} == {
        f"webhook:{every}:{a1}",
        f"webhook:{every}:{a2}",
        f"webhook:{failing}:{a1}",
        f"webhook:{theirs}:{b1}",
    }
    assert a3 not in {event for _, event in queued(enqueue)}
    # Nothing new: nothing queued again; a new event: only it.
    assert await run(hooks_state, enqueue) == 0
    (a4,) = await events(hooks_state, mine, EventType.MAILBOX_FAILING)
    await run(hooks_state, enqueue)
    assert sorted(queued(enqueue)[4:]) == sorted([(every, a4), (failing, a4)])


async def test_a_rolled_back_transaction_queues_nothing_and_keeps_the_cursor(
    hooks_client: httpx.AsyncClient, hooks_state: AppState, enqueue: TransactionalEnqueue, api_key: str
) -> None:
    webhook_id = await subscribe(hooks_client, api_key)
    (event_id,) = await events(
        hooks_state, await account_of(hooks_state, webhook_id), EventType.MAILBOX_FAILING
    )
    read: list[int] = []

    async def dispatch_then_fail() -> None:
        async with hooks_state.transactions.begin() as session:
            read.append(await dispatch(session, enqueue, limit=100))
            raise Boom

    with pytest.raises(Boom):
        await dispatch_then_fail()
    assert read == [1]
    assert enqueue.jobs == []
    await run(hooks_state, enqueue)
    assert queued(enqueue) == [(webhook_id, event_id)]


async def test_a_pass_reads_at_most_limit_events_and_the_next_goes_on_from_there(
    hooks_client: httpx.AsyncClient, hooks_state: AppState, enqueue: TransactionalEnqueue, api_key: str
) -> None:
    webhook_id = await subscribe(hooks_client, api_key, event_types=["mailbox.failing"])
    account_id = await account_of(hooks_state, webhook_id)
    ids = await events(hooks_state, account_id, *[EventType.MAILBOX_FAILING, EventType.MAILBOX_RECOVERED] * 5)
    counts = [await run(hooks_state, enqueue, limit=3) for _ in range(5)]
    assert counts == [3, 3, 3, 1, 0]
    assert queued(enqueue) == [(webhook_id, event_id) for event_id in ids[::2]]


async def test_disabled_subscriptions_get_nothing(
    hooks_client: httpx.AsyncClient, hooks_state: AppState, enqueue: TransactionalEnqueue, api_key: str
) -> None:
    webhook_id = await subscribe(hooks_client, api_key)
    await hooks_client.patch(f"{WEBHOOKS}/{webhook_id}", json={"enabled": False}, headers=headers(api_key))
    await events(hooks_state, await account_of(hooks_state, webhook_id), EventType.MAILBOX_FAILING)
    assert await run(hooks_state, enqueue) == 0
    assert enqueue.jobs == []


async def test_two_dispatchers_at_once_queue_each_event_once(
    hooks_client: httpx.AsyncClient, hooks_state: AppState, enqueue: TransactionalEnqueue, api_key: str
) -> None:
    """Two passes run concurrently, round after round, while events keep arriving: across all committed
    transactions each (subscription, event) is queued exactly once (no reliance on the dedupe key)."""
    hooks = [await subscribe(hooks_client, api_key) for _ in range(3)]
    account_id = await account_of(hooks_state, hooks[0])
    written: list[int] = []
    errors: list[str] = []

    async def dispatcher() -> None:
        try:
            await run(hooks_state, enqueue, limit=7)
        except Exception as exc:
            errors.append(type(exc).__name__)

    for _round in range(5):
        written += await events(hooks_state, account_id, *[EventType.MAILBOX_FAILING] * 6)
        await asyncio.gather(dispatcher(), dispatcher())
    while await run(hooks_state, enqueue, limit=100):
        pass
    pairs = [(job.payload["subscription_id"], job.payload["event_id"]) for job in enqueue.committed]
    assert sorted(pairs) == sorted((hook, event) for hook in hooks for event in written), errors
