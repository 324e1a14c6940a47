"""Concurrency rules of API.md §2.4 and §3: no duplicates, no 500, never a mailbox on a deleted credential."""

from __future__ import annotations

import asyncio

import httpx
from sqlalchemy import select

from m365connect.credentials.models import GraphCredential
from m365connect.mailboxes.models import Mailbox
from m365connect.simulator import FakeMicrosoft
from m365connect.state import AppState
from tests.factories import CREDENTIALS, bulk, create_credential
from tests.helpers import active_mailboxes, assert_code, headers, ids_per_address
from tests.work.helpers import eventually

CONTOSO = ["jim@contoso.com", "pam@contoso.com", "oscar@contoso.com", "nate@contoso.com"]


async def _assert_no_orphans(state: AppState) -> None:
    async with state.sessions() as session:
        credential_ids = set((await session.scalars(select(GraphCredential.id))).all())
        rows = (await session.scalars(select(Mailbox))).all()
    for row in rows:
        if row.status == "ACTIVE":
            assert row.credential_id in credential_ids, row.email
        else:
            assert row.credential_id is None or row.credential_id in credential_ids


async def test_overlapping_bulk_requests_connect_each_address_once(
    client: httpx.AsyncClient, api_key: str, state: AppState, microsoft: FakeMicrosoft
) -> None:
    await create_credential(client, api_key=api_key)
    microsoft.faults.latency_ms = 20
    requests = [CONTOSO[:3], CONTOSO[1:], CONTOSO, CONTOSO[::-1], CONTOSO[2:]]
    responses = await asyncio.gather(*(bulk(client, api_key=api_key, emails=emails) for emails in requests))
    ids = ids_per_address(requests, responses)
    rows = await active_mailboxes(state)
    assert sorted(row.email for row in rows) == sorted(CONTOSO)
    assert {row.email: row.id for row in rows} == ids


async def test_delete_landing_while_a_bulk_waits_for_microsoft(
    client: httpx.AsyncClient, api_key: str, state: AppState, microsoft: FakeMicrosoft
) -> None:
    credential = await create_credential(client, api_key=api_key)
    microsoft.faults.latency_ms = 150  # the bulk spends a while in Graph, holding no transaction
    batches = microsoft.stats.batch_requests
    running = asyncio.create_task(
        bulk(client, api_key=api_key, emails=CONTOSO, credential_id=credential["credential_id"])
    )

    # Delete once the bulk is in Graph (its credential read and token done), not after a guessed sleep:
    # on a loaded machine the delete landed first and the bulk, naming no credential, rightly answered
    # NO_VALID_CREDENTIAL.
    async def in_graph() -> bool:
        return microsoft.stats.batch_requests > batches

    await eventually(in_graph)
    deleted = await client.delete(f"{CREDENTIALS}/{credential['credential_id']}", headers=headers(api_key))
    assert deleted.status_code == 204
    assert_code(await running, "INVALID_CREDENTIAL_ID")
    assert await active_mailboxes(state) == []
    await _assert_no_orphans(state)


async def test_delete_after_a_bulk_committed_is_refused(
    client: httpx.AsyncClient, api_key: str, state: AppState
) -> None:
    credential = await create_credential(client, api_key=api_key)
    assert (await bulk(client, api_key=api_key, emails=CONTOSO[:1])).status_code == 201
    url = f"{CREDENTIALS}/{credential['credential_id']}"
    assert_code(await client.delete(url, headers=headers(api_key)), "MICROSOFT_GRAPH_CREDENTIAL_IN_USE")
    mailbox_id = (await active_mailboxes(state))[0].id
    assert (
        await client.delete(f"/rest/v2/mailboxes/microsoft/{mailbox_id}", headers=headers(api_key))
    ).status_code == 204
    assert (await client.delete(url, headers=headers(api_key))).status_code == 204
    await _assert_no_orphans(state)
    async with state.sessions() as session:
        kept = await session.scalar(select(Mailbox).where(Mailbox.id == mailbox_id))
    assert kept is not None
    assert (kept.status, kept.credential_id) == ("DISCONNECTED", None)


async def test_deletes_racing_bulks_never_leave_an_orphan(
    client: httpx.AsyncClient, api_key: str, state: AppState, microsoft: FakeMicrosoft
) -> None:
    microsoft.faults.latency_ms = 5
    outcomes = set()
    for delay in (0.0, 0.005, 0.02, 0.05, 0.2):
        credential = await create_credential(client, api_key=api_key)
        url = f"{CREDENTIALS}/{credential['credential_id']}"

        async def delete_later(pause: float = delay, target: str = url) -> httpx.Response:
            await asyncio.sleep(pause)
            return await client.delete(target, headers=headers(api_key))

        # The credential is named, as in API.md §2.4: whether the delete lands before the bulk reads the
        # credential or while it waits for Graph, the bulk answers INVALID_CREDENTIAL_ID.
        connect = bulk(client, api_key=api_key, emails=CONTOSO[:2], credential_id=credential["credential_id"])
        added, deleted = await asyncio.gather(connect, delete_later())
        assert added.status_code in (201, 422), added.text
        assert deleted.status_code in (204, 422), deleted.text
        if added.status_code == 201:
            assert_code(deleted, "MICROSOFT_GRAPH_CREDENTIAL_IN_USE")
            for row in await active_mailboxes(state):
                assert (
                    await client.delete(f"/rest/v2/mailboxes/microsoft/{row.id}", headers=headers(api_key))
                ).status_code == 204
            assert (await client.delete(url, headers=headers(api_key))).status_code == 204
        else:
            assert_code(added, "INVALID_CREDENTIAL_ID")
            assert deleted.status_code == 204
        outcomes.add(added.status_code)
        await _assert_no_orphans(state)
    assert outcomes == {201, 422}  # an early delete wins, a late one is refused: both orders were exercised
