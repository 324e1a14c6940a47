"""/metrics for background verification (issue 11 item 6): checks run by kind and outcome move with each
check (ok, failing, transient), and the state gauges (ACTIVE mailboxes OK/FAILING, credentials
VALID/EXPIRED/INVALID) follow the database at each scrape, through the real ASGI stack on both databases.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import event

from m365connect.errors import ServiceUnavailable
from m365connect.health.credential_checks import check_credential
from m365connect.health.mailbox_checks import check_mailboxes
from m365connect.health.repository import state_counts
from m365connect.settings import Settings
from m365connect.simulator import FakeMicrosoft
from m365connect.state import AppState, open_state
from tests import scenario_values as sv
from tests.factories import MAILBOXES, create_credential
from tests.health_helpers import connect, set_expiry
from tests.helpers import headers

JIM, PAM = "jim@contoso.com", "pam@contoso.com"


@pytest.fixture
async def state(settings: Settings) -> AsyncIterator[AppState]:
    """The service with a 1.5 s Graph budget, so that a storm of 503 ends quickly."""
    async with open_state(settings.model_copy(update={"bulk_deadline_seconds": 1.5})) as built:
        yield built


async def _scrape(client: httpx.AsyncClient, name: str) -> dict[tuple[str, str], float]:
    """One metric of a fresh /metrics scrape: {(kind, outcome or state): value}."""
    answer = await client.get("/metrics")
    assert answer.status_code == 200
    values = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            if sample.name == name:
                second = sample.labels.get("outcome", sample.labels.get("state", ""))
                values[(sample.labels["kind"], second)] = sample.value
    return values


async def _checks(client: httpx.AsyncClient) -> dict[tuple[str, str], float]:
    return await _scrape(client, "m365connect_health_checks_total")


async def _states(client: httpx.AsyncClient) -> dict[tuple[str, str], float]:
    return await _scrape(client, "m365connect_health_states")


async def test_checks_are_counted_by_kind_and_outcome(
    client: httpx.AsyncClient, api_key: str, state: AppState, microsoft: FakeMicrosoft
) -> None:
    credential_id = (await create_credential(client, api_key=api_key))["credential_id"]
    ids = await connect(client, api_key, [JIM, PAM], credential_id)
    both = sorted(ids.values())
    zero = dict.fromkeys(
        [(kind, outcome) for kind in ("credential", "mailbox") for outcome in ("ok", "failing", "transient")],
        0.0,
    )
    assert await _checks(client) == zero  # every series exists before the first check

    microsoft.change_user("contoso.com", JIM, account_enabled=False)
    await check_mailboxes(state, credential_id, both)
    await check_credential(state, credential_id)
    assert await _checks(client) == {
        **zero,
        ("mailbox", "ok"): 1,
        ("mailbox", "failing"): 1,
        ("credential", "ok"): 1,
    }

    microsoft.faults.graph_retry_after = 0.05
    microsoft.faults.graph_unavailable_rate = 1.0  # no answer: each mailbox's check is transient
    with pytest.raises(ServiceUnavailable):
        await check_mailboxes(state, credential_id, both)
    microsoft.faults.graph_unavailable_rate = 0.0
    microsoft.faults.token_unavailable_rate = 1.0
    with pytest.raises(ServiceUnavailable):
        await check_credential(state, credential_id)
    microsoft.faults.token_unavailable_rate = 0.0
    assert await _checks(client) == {
        **zero,
        ("mailbox", "ok"): 1,
        ("mailbox", "failing"): 1,
        ("mailbox", "transient"): 2,
        ("credential", "ok"): 1,
        ("credential", "transient"): 1,
    }

    microsoft.change_app("contoso.com", sv.WORKING_APP, enabled=False)  # a refusal: both fail with it
    await check_credential(state, credential_id)
    await check_mailboxes(state, credential_id, both)
    assert await _checks(client) == {
        **zero,
        ("mailbox", "ok"): 1,
        ("mailbox", "failing"): 3,
        ("mailbox", "transient"): 2,
        ("credential", "ok"): 1,
        ("credential", "failing"): 1,
        ("credential", "transient"): 1,
    }


async def test_state_gauges_follow_the_database_at_each_scrape(
    client: httpx.AsyncClient, api_key: str, state: AppState, microsoft: FakeMicrosoft
) -> None:
    empty = {
        ("mailbox", "OK"): 0.0,
        ("mailbox", "FAILING"): 0.0,
        ("credential", "VALID"): 0.0,
        ("credential", "EXPIRED"): 0.0,
        ("credential", "INVALID"): 0.0,
    }
    assert await _states(client) == empty
    credential_id = (await create_credential(client, api_key=api_key))["credential_id"]
    ids = await connect(client, api_key, [JIM, PAM], credential_id)
    assert await _states(client) == {**empty, ("mailbox", "OK"): 2, ("credential", "VALID"): 1}

    microsoft.change_user("contoso.com", JIM, account_enabled=False)
    await check_mailboxes(state, credential_id, sorted(ids.values()))
    assert await _states(client) == {
        **empty,
        ("mailbox", "OK"): 1,
        ("mailbox", "FAILING"): 1,
        ("credential", "VALID"): 1,
    }

    # A disconnected mailbox is no longer counted; an expired secret makes the credential EXPIRED.
    removed = await client.delete(f"{MAILBOXES}/{ids[PAM]}", headers=headers(api_key))
    assert removed.status_code == 204
    await set_expiry(state, credential_id, datetime(2020, 1, 1, tzinfo=UTC))
    await check_credential(state, credential_id)
    assert await _states(client) == {**empty, ("mailbox", "FAILING"): 1, ("credential", "EXPIRED"): 1}


async def test_the_mailboxes_count_reads_the_index_alone(state: AppState, backend: str) -> None:
    sent: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_rest: Any) -> None:
        sent.append((statement, parameters))

    event.listen(state.engine.sync_engine, "before_cursor_execute", capture)
    try:
        async with state.sessions() as session:
            await state_counts(session, now=datetime.now(UTC))
    finally:
        event.remove(state.engine.sync_engine, "before_cursor_execute", capture)
    [(statement, parameters)] = [(sql, params) for sql, params in sent if "health_state" in sql]
    explain = "EXPLAIN QUERY PLAN " if backend == "sqlite" else "EXPLAIN "
    async with state.engine.connect() as connection:
        if backend != "sqlite":
            await connection.exec_driver_sql("SET LOCAL enable_seqscan = off")  # as with many rows
        plan = (await connection.exec_driver_sql(explain + statement, parameters)).all()
    details = " ".join(str(row[-1]) for row in plan)
    wanted = "USING COVERING INDEX" if backend == "sqlite" else "Index Only Scan using"
    assert f"{wanted} ix_mailboxes_health_state" in details, details
