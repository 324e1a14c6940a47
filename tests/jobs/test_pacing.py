"""Pacing through the real service against the simulator's budgets (issue 12 item 2): a synchronous bulk of
300 mailboxes, probe on, gets (almost) no 429 with pacing and many without it, in the same run; and a
job's background chunks give way to a synchronous request of the same app."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from m365connect.app import create_app
from m365connect.db.engine import create_engine
from m365connect.pacing.repository import DatabaseStore
from m365connect.settings import Settings
from m365connect.simulator import FakeMicrosoft
from m365connect.state import open_state
from tests.factories import BULK
from tests.helpers import headers
from tests.jobs.support import addresses, async_headers, body, wait_for_status, working


@pytest.fixture
def budgets(tenant: FakeMicrosoft) -> Iterator[FakeMicrosoft]:
    """The jobs simulator enforcing Graph's budgets, 10 ms per call; both off again after the test."""
    tenant.budgets.update({"enabled": True})
    tenant.budget_meter.reset()
    tenant.faults.latency_ms = 10
    try:
        yield tenant
    finally:
        tenant.budgets.update({"enabled": False})
        tenant.budget_meter.reset()


async def bulk_through(settings: Settings, key: str, payload: dict[str, Any]) -> httpx.Response:
    """POST /bulk through a service built on `settings` (its own state, the same database)."""
    async with open_state(settings) as state:
        transport = httpx.ASGITransport(app=create_app(settings, state=state), raise_app_exceptions=False)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://m365connect.test", timeout=120
        ) as client:
            return await client.post(BULK, json=payload, headers=headers(key))


def throttled(fake: FakeMicrosoft) -> tuple[int, int]:
    """The budget 429s the simulator served, and the calls it admitted, since its meter was reset."""
    snapshot = fake.budget_meter.snapshot()
    return sum(snapshot["throttled"].values()), sum(snapshot["admitted"].values())


async def test_a_paced_bulk_gets_almost_no_429s_where_an_unpaced_one_gets_many(
    job_settings: Settings, key: str, credential_id: int, budgets: FakeMicrosoft
) -> None:
    seen: dict[bool, tuple[int, int]] = {}
    failed: dict[bool, int] = {}
    for paced, emails in ((False, addresses(300)), (True, addresses(300, start=300))):
        budgets.budget_meter.reset()
        settings = job_settings.model_copy(update={"graph_pacing": paced})
        response = await bulk_through(settings, key, body(emails, credential_id=credential_id))
        failed[paced] = sum(not item["success"] for item in response.json())
        seen[paced] = throttled(budgets)
    (unpaced_429s, _), (paced_429s, paced_calls) = seen[False], seen[True]
    # Paced, every mailbox connects; unpaced, the client's five waves do not get them all through.
    assert failed[True] == 0, (failed, seen)
    # 15 envelopes of 20 probes each want 4 of the app's 4 Outlook slots: unpaced, 8 go at once.
    assert unpaced_429s >= 30, seen
    # Paced, the Outlook budget starts at 4 (the simulator's limit here) and probes for more once: that
    # probe carries one Outlook item, which Microsoft refuses, and a 429 holds probing for an hour.
    assert paced_429s <= 1, seen
    assert paced_calls >= 600  # 300 lookups and 300 probes were made
    assert await outlook_limit(job_settings) == (4, True)


async def outlook_limit(settings: Settings) -> tuple[int, bool]:
    """The jobs credential's Outlook budget: its limit, and whether a hold runs."""
    engine = create_engine(settings.database_url)
    try:
        store = DatabaseStore(engine)
        async with engine.connect() as connection:
            key = (
                await connection.execute(
                    text("SELECT key FROM graph_pace_budgets WHERE key LIKE 'outlook/%'")
                )
            ).scalar_one()
        state = await store.state(key, interactive_seconds=None)
        await store.aclose()
    finally:
        await engine.dispose()
    assert state is not None
    return state.slot_limit, state.hold_until > state.now


async def test_the_outlook_budget_grows_where_microsoft_allows_more_calls_in_flight(
    job_settings: Settings, key: str, credential_id: int, budgets: FakeMicrosoft
) -> None:
    """The other reading of Microsoft's Outlook concurrency (4 per mailbox, not per app): the probes are
    answered, the budget grows to its maximum and nothing is refused."""
    budgets.budgets.update({"outlook_concurrency_scope": "mailbox"})
    try:
        response = await bulk_through(job_settings, key, body(addresses(400), credential_id=credential_id))
    finally:
        budgets.budgets.update({"outlook_concurrency_scope": "app"})
    assert [item["email"] for item in response.json() if not item["success"]] == []
    assert throttled(budgets)[0] == 0
    limit, held = await outlook_limit(job_settings)
    assert not held
    assert 8 <= limit <= job_settings.graph_pacing_outlook_max_concurrency, limit


async def test_a_synchronous_request_goes_before_a_jobs_chunks_of_the_same_app(
    job_settings: Settings, key: str, credential_id: int, budgets: FakeMicrosoft
) -> None:
    settings = job_settings.model_copy(update={"bulk_job_concurrency": 4})
    async with open_state(settings) as state:
        transport = httpx.ASGITransport(app=create_app(settings, state=state), raise_app_exceptions=False)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://m365connect.test", timeout=120
        ) as client:
            started = await client.post(
                f"{BULK}", json=body(addresses(400), credential_id=credential_id), headers=async_headers(key)
            )
            assert started.status_code == 202, started.text
            job_id = started.json()["job_id"]
            async with working(state):
                await wait_for_status(client, key, job_id, processed=True)
                begun = time.monotonic()
                small = await client.post(
                    BULK,
                    json=body(addresses(10, start=500), credential_id=credential_id),
                    headers=headers(key),
                )
                small_seconds = time.monotonic() - begun
                job = await wait_for_status(client, key, job_id, seconds=120)
                job_done = time.monotonic() - begun
    assert small.status_code == 201, small.text
    assert job["connected"] == 400
    # The small request did not wait behind the job's remaining chunks (it finished well before the job);
    # with the job's chunks as interactive as it, it waits its turn among them and this fails.
    assert small_seconds < job_done / 2, (small_seconds, job_done)
