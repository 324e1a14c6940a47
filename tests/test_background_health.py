"""Issue 11 end to end on the work engine, as `serve` and `worker` run it: the planner enqueues a due
mailbox's check, the check finds the user disabled in the tenant, `mailbox.failing` is written and reaches
a webhook receiver with a valid Standard Webhooks signature; the user re-enabled, `mailbox.recovered`
follows the same way. Nothing calls a check directly: only the registered periodic task and job kinds run.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from sqlalchemy import update
from standardwebhooks import Webhook as Verifier

from m365connect.accounts.service import create_api_key
from m365connect.db.base import utcnow
from m365connect.health.jobs import PLAN_TASK
from m365connect.mailboxes.models import Mailbox
from m365connect.settings import Settings
from m365connect.simulator import FakeMicrosoft
from m365connect.state import AppState, open_state
from tests.factories import MAILBOXES, WEBHOOKS, create_credential
from tests.health_helpers import connect
from tests.helpers import headers
from tests.webhooks.support import Receiver, api_over, receiving

JIM = "jim@contoso.com"


async def _make_due(state: AppState, mailbox_id: int) -> None:
    """As the planner finds it once its moment in the interval comes."""
    async with state.transactions.begin() as session:
        await session.execute(update(Mailbox).where(Mailbox.id == mailbox_id).values(next_check_at=utcnow()))


def _hooked(receiver: Receiver, count: int, secret: str) -> list[dict[str, Any]]:
    """The first `count` deliveries, each verified against the subscription's secret."""
    verifier = Verifier(secret)
    return [verifier.verify(item.body, item.headers) for item in receiver.received[:count]]


async def test_a_disabled_user_reaches_the_webhook_as_failing_then_recovered(
    settings: Settings, microsoft: FakeMicrosoft
) -> None:
    quick = settings.model_copy(
        update={"webhook_allow_private_networks": True, "webhook_timeout": 2.0, "work_poll_seconds": 0.1}
    )
    async with open_state(quick) as state, receiving() as receiver:
        assert PLAN_TASK in state.work.periodic
        async with state.transactions.begin() as session:
            api_key = (await create_api_key(session, account_name="acme")).plaintext
        async with api_over(quick, state) as client:
            credential = await create_credential(client, api_key=api_key)
            mailbox_id = (await connect(client, api_key, [JIM], credential["credential_id"]))[JIM]
            created = await client.post(
                WEBHOOKS,
                json={"url": receiver.url(), "event_types": ["mailbox.failing", "mailbox.recovered"]},
                headers=headers(api_key),
            )
            assert created.status_code == 201, created.text
            secret = created.json()["secret"]

            stop = asyncio.Event()
            running = asyncio.create_task(state.work.run(stop))
            try:
                microsoft.change_user("contoso.com", JIM, account_enabled=False)
                await _make_due(state, mailbox_id)
                await receiver.wait_for(1)
                failing = await client.get(f"{MAILBOXES}/{mailbox_id}", headers=headers(api_key))

                microsoft.change_user("contoso.com", JIM, account_enabled=True)
                await _make_due(state, mailbox_id)
                await receiver.wait_for(2)
                recovered = await client.get(f"{MAILBOXES}/{mailbox_id}", headers=headers(api_key))
            finally:
                stop.set()
                await running

    first, second = _hooked(receiver, 2, secret)
    assert (first["type"], first["data"]["id"]) == ("mailbox.failing", mailbox_id)
    assert first["data"]["health"]["error"] == "MAILBOX_DISABLED"
    assert (second["type"], second["data"]["id"]) == ("mailbox.recovered", mailbox_id)
    assert failing.json()["status"] == "ACTIVE"  # failing never disconnects
    assert failing.json()["health"]["state"] == "FAILING"
    assert recovered.json()["health"] == {**recovered.json()["health"], "state": "OK", "error": None}
    assert len(receiver.received) == 2  # each change once; the subscription filtered the rest
    assert all(secret not in json.dumps(item.headers) for item in receiver.received)
