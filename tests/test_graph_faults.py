"""Graph misbehaving beyond throttling: malformed JSON and answers slower than our timeout (issue 5, item 2).

Whatever Microsoft does, each item ends connected or with MICROSOFT_UNAVAILABLE, never a 500, and the
database holds exactly the mailboxes the answer calls connected.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from m365connect.app import create_app
from m365connect.settings import Settings
from m365connect.simulator import FakeMicrosoft
from m365connect.state import AppState, open_state
from tests.factories import bulk, create_credential
from tests.helpers import active_mailboxes
from tests.test_concurrency import CONTOSO


@pytest.fixture
async def hasty(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, AppState]]:
    """A service that waits 0.3 s for an HTTP answer and gives a bulk 2 s of Graph retries."""
    quick = settings.model_copy(update={"http_timeout": 0.3, "bulk_deadline_seconds": 2.0})
    async with open_state(quick) as state:
        transport = httpx.ASGITransport(app=create_app(quick, state=state), raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            yield http, state


def _assert_saved_as_answered(results: list[dict[str, Any]], active_emails: set[str]) -> None:
    connected = {item["email"] for item in results if item["success"]}
    assert connected == active_emails
    for item in results:
        assert item["success"] or item["error"] == "MICROSOFT_UNAVAILABLE", item


async def test_malformed_json_is_retried_then_unavailable_and_never_a_500(
    hasty: tuple[httpx.AsyncClient, AppState], api_key: str, microsoft: FakeMicrosoft
) -> None:
    http, state = hasty
    await create_credential(http, api_key=api_key)
    microsoft.faults.graph_malformed_rate = 1.0
    response = await bulk(http, api_key=api_key, emails=CONTOSO)
    assert response.status_code == 207, response.text
    assert [item["error"] for item in response.json()] == ["MICROSOFT_UNAVAILABLE"] * len(CONTOSO)
    assert microsoft.stats.graph_requests >= 2  # the garbage answer was asked for again
    assert await active_mailboxes(state) == []
    microsoft.faults.graph_malformed_rate = 0.0
    healed = await bulk(http, api_key=api_key, emails=CONTOSO)
    assert healed.status_code == 201, healed.text
    _assert_saved_as_answered(healed.json(), {row.email for row in await active_mailboxes(state)})


async def test_answers_slower_than_the_timeout_end_unavailable(
    hasty: tuple[httpx.AsyncClient, AppState], api_key: str, microsoft: FakeMicrosoft
) -> None:
    http, state = hasty
    await create_credential(http, api_key=api_key)  # the token is cached before Microsoft slows down
    microsoft.faults.latency_ms = 600
    response = await bulk(http, api_key=api_key, emails=CONTOSO[:2])
    assert response.status_code == 207, response.text
    assert [item["error"] for item in response.json()] == ["MICROSOFT_UNAVAILABLE"] * 2
    assert await active_mailboxes(state) == []
    microsoft.faults.latency_ms = 0
    healed = await bulk(http, api_key=api_key, emails=CONTOSO[:2])
    assert healed.status_code == 201
    _assert_saved_as_answered(healed.json(), {row.email for row in await active_mailboxes(state)})


async def test_connections_dropped_mid_answer_are_retried_and_never_a_500(
    hasty: tuple[httpx.AsyncClient, AppState], api_key: str, microsoft: FakeMicrosoft
) -> None:
    http, state = hasty
    await create_credential(http, api_key=api_key)
    microsoft.faults.graph_reset_rate = 1.0
    dropped = await bulk(http, api_key=api_key, emails=CONTOSO[:2])
    assert dropped.status_code == 207, dropped.text
    assert [item["error"] for item in dropped.json()] == ["MICROSOFT_UNAVAILABLE"] * 2
    assert microsoft.stats.graph_requests >= 2  # asked again after the first connection died
    assert await active_mailboxes(state) == []
    microsoft.faults.graph_reset_rate = 0.5
    microsoft.faults.seed = 2
    mixed = await bulk(http, api_key=api_key, emails=CONTOSO)
    assert mixed.status_code in (201, 207), mixed.text
    _assert_saved_as_answered(mixed.json(), {row.email for row in await active_mailboxes(state)})
