"""Webhooks through the real work engine (pgqueuer on PostgreSQL, the work_jobs queue on SQLite): an
event is dispatched by the periodic outbox pass, delivered by a `webhook.deliver` job, retried on
M365CONNECT_WEBHOOK_RETRY_DELAYS after a failure, and the log shows each attempt."""

from __future__ import annotations

import asyncio
from typing import Any

from standardwebhooks import Webhook as Verifier

from m365connect.accounts.service import create_api_key
from m365connect.events.service import record_event
from m365connect.events.types import EventType
from m365connect.settings import Settings
from m365connect.state import open_state
from m365connect.webhooks.models import Webhook
from tests.factories import WEBHOOKS
from tests.helpers import headers
from tests.webhooks.support import api_over, receiving


async def test_an_event_reaches_the_receiver_through_the_engine_and_a_failure_is_retried(
    settings: Settings,
) -> None:
    quick = settings.model_copy(
        update={
            "webhook_allow_private_networks": True,
            "webhook_retry_delays": "0.2",
            "webhook_timeout": 2.0,
            "work_poll_seconds": 0.1,
        }
    )
    async with open_state(quick) as state, receiving() as receiver:
        receiver.script.append(500)
        async with state.transactions.begin() as session:
            api_key = (await create_api_key(session, account_name="acme")).plaintext
        async with api_over(quick, state) as client:
            created = await client.post(WEBHOOKS, json={"url": receiver.url()}, headers=headers(api_key))
            assert created.status_code == 201, created.text
            hook: dict[str, Any] = created.json()
            async with state.sessions() as session:
                row = await session.get(Webhook, hook["id"])
                assert row is not None
                account_id = row.account_id
            async with state.transactions.begin() as session:
                event = await record_event(
                    session, account_id=account_id, type=EventType.MAILBOX_FAILING, data={"id": 1}
                )
            stop = asyncio.Event()
            running = asyncio.create_task(state.work.run(stop))
            try:
                await receiver.wait_for(2)
            finally:
                stop.set()
                await running
            log = (await client.get(f"{WEBHOOKS}/{hook['id']}/deliveries", headers=headers(api_key))).json()
    first, second = receiver.received
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == str(event.id)
    assert Verifier(hook["secret"]).verify(second.body, second.headers)["type"] == "mailbox.failing"
    assert [(row["event_id"], row["status_code"]) for row in log["content"]] == [
        (event.id, 200),
        (event.id, 500),
    ]
