"""A transaction PostgreSQL gives up on (deadlock, serialization failure) answers 503, never a 500.

The ordered insert (tests/test_overlapping_bulks.py) removes the deadlock between bulks. Should another
writer ever take the same index entries in another order, PostgreSQL aborts one transaction with
`deadlock detected` (40P01): nothing of that request is saved and resending it is safe, so the answer is
the documented 503 + Retry-After. Here a second connection plays that writer, for real.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
from sqlalchemy import insert, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from m365connect.credentials.models import GraphCredential
from m365connect.db.engine import create_engine
from m365connect.mailboxes.models import Mailbox
from m365connect.state import AppState
from tests.factories import bulk, create_credential
from tests.helpers import active_mailboxes, assert_generic_error

# Inserted in this order by the service (sorted): jim first, pam last.
CONTOSO = ["pam@contoso.com", "jim@contoso.com", "oscar@contoso.com", "nate@contoso.com"]


async def _row(state: AppState, email: str) -> dict[str, Any]:
    async with state.sessions() as session:
        credential = (await session.scalars(select(GraphCredential))).one()
    return {
        "account_id": credential.account_id,
        "credential_id": credential.id,
        "email": email,
        "name": None,
        "microsoft_user_id": "00000000-0000-0000-0000-000000000000",
        "status": "ACTIVE",
        "spf_correct": False,
        "dkim_correct": False,
    }


async def _wait_for_a_blocked_insert(watcher: AsyncConnection) -> None:
    """Until a backend of this database waits for a lock inside an INSERT INTO mailboxes (bounded)."""
    query = text(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND wait_event_type = 'Lock' AND query LIKE 'INSERT INTO mailboxes%'"
    )
    deadline = time.monotonic() + 10
    while not await watcher.scalar(query):
        await watcher.rollback()  # pg_stat_activity is a snapshot per transaction
        assert time.monotonic() < deadline, "the bulk never waited for the other writer"
        await asyncio.sleep(0.02)


async def test_a_deadlocked_bulk_is_503_and_saves_nothing(
    backend: str, database_url: str, client: httpx.AsyncClient, api_key: str, state: AppState
) -> None:
    if backend != "postgresql":
        pytest.skip("SQLite has one writer at a time: no deadlock between writers")
    await create_credential(client, api_key=api_key)
    table = Mailbox.__table__
    engine = create_engine(database_url)
    try:
        async with engine.connect() as other, engine.connect() as watcher:
            # A long deadlock_timeout here: PostgreSQL's detector runs in the service's backend first and
            # aborts the service's transaction, as it would for whichever waited first.
            await other.execute(text("SET deadlock_timeout = '30s'"))
            await other.execute(insert(table).values(**await _row(state, "pam@contoso.com")))
            connecting = asyncio.create_task(bulk(client, api_key=api_key, emails=CONTOSO))
            await _wait_for_a_blocked_insert(watcher)  # the bulk holds jim..oscar and waits for pam
            crossing = asyncio.create_task(
                other.execute(insert(table).values(**await _row(state, "jim@contoso.com")))
            )
            answer = await connecting
            await crossing  # the service's transaction was rolled back: jim is free
            await other.rollback()
    finally:
        await engine.dispose()
    assert_generic_error(answer, status=503, title="Service Unavailable")
    assert answer.headers["retry-after"] == "5"
    assert await active_mailboxes(state) == []
    again = await bulk(client, api_key=api_key, emails=CONTOSO)  # resending is safe, and now succeeds
    assert again.status_code == 201, again.text
    assert len(await active_mailboxes(state)) == len(CONTOSO)
