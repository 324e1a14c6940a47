"""The event stream (API.md 6): one event per change in the change's transaction, the cursor endpoint, its
400s, the hidden `webhook.test` type, rollback and retention."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from pydantic import ValidationError
from sqlalchemy import func, select, update

from m365connect.accounts.models import Account
from m365connect.events.jobs import PURGE_TASK
from m365connect.events.models import Event
from m365connect.events.service import purge_events, record_event, retention_cutoff
from m365connect.events.types import EventType
from m365connect.mailboxes import service as mailboxes
from m365connect.settings import Settings
from m365connect.state import AppState
from tests import scenario_values as sv
from tests.factories import CREDENTIALS, EVENTS, MAILBOXES, bulk, create_credential
from tests.helpers import assert_code, assert_generic_error, headers

AT_MOST_MAX_ID = "Input should be less than or equal to 9223372036854775807"
NOT_AN_INTEGER = "Input should be a valid integer, unable to parse string as an integer"


async def stream(client: httpx.AsyncClient, api_key: str, *, after: int = 0) -> list[dict[str, Any]]:
    """Every event of the key's account after `after`, following the cursor in small pages."""
    found: list[dict[str, Any]] = []
    while True:
        response = await client.get(EVENTS, params={"after": after, "limit": 2}, headers=headers(api_key))
        assert response.status_code == 200, response.text
        page = response.json()
        found.extend(page["events"])
        if not page["events"]:
            assert page["next_after"] == after
            return found
        assert page["next_after"] == page["events"][-1]["id"]
        after = page["next_after"]


async def acme(state: AppState) -> int:
    """The id of the `api_key` fixture's account."""
    async with state.sessions() as session:
        return int(await session.scalar(select(Account.id).where(Account.name == "acme")) or 0)


async def event_count(state: AppState) -> int:
    async with state.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(Event)) or 0)


async def test_each_change_emits_one_event_with_the_object_after_it(
    client: httpx.AsyncClient, api_key: str
) -> None:
    key = headers(api_key)
    credential = await create_credential(client, api_key=api_key)
    url = f"{CREDENTIALS}/{credential['credential_id']}"
    renamed = (await client.patch(url, json={"name": "renamed"}, headers=key)).json()
    rotated = await client.patch(
        url, json={"client_secret": sv.WORKING_SECRET_2, "secret_expires_at": sv.FUTURE}, headers=key
    )
    assert rotated.status_code == 200, rotated.text
    connected = (await bulk(client, api_key=api_key, emails=["jim@contoso.com", "pam@contoso.com"])).json()
    again = await bulk(client, api_key=api_key, emails=["jim@contoso.com"])  # already connected: no event
    assert again.json()[0]["already_connected"]
    mailbox_reads = [
        (await client.get(f"{MAILBOXES}/{item['id']}", headers=key)).json() for item in connected
    ]
    for item in connected:
        assert (await client.delete(f"{MAILBOXES}/{item['id']}", headers=key)).status_code == 204
    assert (await client.delete(f"{MAILBOXES}/{connected[0]['id']}", headers=key)).status_code == 204  # no-op
    disconnected = [(await client.get(f"{MAILBOXES}/{item['id']}", headers=key)).json() for item in connected]
    before_delete = (await client.get(CREDENTIALS, headers=key)).json()["credentials"][0]
    assert (await client.delete(url, headers=key)).status_code == 204

    events = await stream(client, api_key)
    assert [(event["type"], event["data"]) for event in events] == [
        ("credential.created", credential),
        ("credential.updated", renamed),
        ("credential.updated", rotated.json()),
        ("mailbox.connected", mailbox_reads[0]),
        ("mailbox.connected", mailbox_reads[1]),
        ("mailbox.disconnected", disconnected[0]),
        ("mailbox.disconnected", disconnected[1]),
        ("credential.deleted", before_delete),
    ]
    ids = [event["id"] for event in events]
    assert ids == sorted(set(ids))
    for event in events:
        assert set(event) == {"id", "type", "occurred_at", "data"}
        assert event["occurred_at"].endswith("Z")
    text = str(events)
    assert sv.WORKING_SECRET not in text
    assert sv.WORKING_SECRET_2 not in text


async def test_the_page_and_its_cursor(client: httpx.AsyncClient, api_key: str) -> None:
    key = headers(api_key)
    empty = await client.get(EVENTS, headers=key)
    assert empty.json() == {"events": [], "next_after": 0}
    assert (await client.get(EVENTS, params={"after": 99}, headers=key)).json() == {
        "events": [],
        "next_after": 99,
    }
    await create_credential(client, api_key=api_key)
    await bulk(client, api_key=api_key, emails=["jim@contoso.com", "pam@contoso.com", "oscar@contoso.com"])
    everything = (await client.get(EVENTS, headers=key)).json()
    assert len(everything["events"]) == 4
    first = (await client.get(EVENTS, params={"limit": 1}, headers=key)).json()
    assert first == {"events": everything["events"][:1], "next_after": everything["events"][0]["id"]}
    rest = (
        await client.get(EVENTS, params={"after": first["next_after"], "limit": 1000}, headers=key)
    ).json()
    assert rest["events"] == everything["events"][1:]


@pytest.mark.parametrize(
    ("query", "detail"),
    [
        ("limit=0", "Field 'limit' is invalid: Input should be greater than or equal to 1"),
        ("limit=1001", "Field 'limit' is invalid: Input should be less than or equal to 1000"),
        ("limit=ten", f"Field 'limit' is invalid: {NOT_AN_INTEGER}"),
        ("after=-1", "Field 'after' is invalid: Input should be greater than or equal to 0"),
        ("after=1.5", f"Field 'after' is invalid: {NOT_AN_INTEGER}"),
        ("after=9223372036854775808", f"Field 'after' is invalid: {AT_MOST_MAX_ID}"),
    ],
)  # fmt: skip
async def test_a_bad_parameter_is_a_400_naming_it(
    client: httpx.AsyncClient, api_key: str, query: str, detail: str
) -> None:
    response = await client.get(f"{EVENTS}?{query}", headers=headers(api_key))
    assert_generic_error(response, status=400, title="Bad Request", detail=detail)


async def test_the_stream_needs_an_api_key(client: httpx.AsyncClient) -> None:
    for sent in ({}, headers("m365c_not_a_key")):
        assert_generic_error(await client.get(EVENTS, headers=sent), status=401, title="Unauthorized")


async def test_webhook_test_events_never_appear(
    client: httpx.AsyncClient, api_key: str, state: AppState
) -> None:
    credential = await create_credential(client, api_key=api_key)
    async with state.transactions.begin() as session:
        await record_event(session, account_id=await acme(state), type=EventType.WEBHOOK_TEST, data={"t": 1})
    renamed = f"{CREDENTIALS}/{credential['credential_id']}"
    await client.patch(renamed, json={"name": "x"}, headers=headers(api_key))
    assert await event_count(state) == 3  # stored, and hidden from the stream
    types = [event["type"] for event in await stream(client, api_key)]
    assert types == ["credential.created", "credential.updated"]


async def test_a_change_rolled_back_leaves_no_event(
    client: httpx.AsyncClient, api_key: str, state: AppState
) -> None:
    credential = await create_credential(client, api_key=api_key)
    [jim] = (await bulk(client, api_key=api_key, emails=["jim@contoso.com"])).json()
    account_id = await acme(state)
    before = await event_count(state)

    seen_inside: list[int] = []

    async def disconnect_then_fail() -> None:
        async with state.transactions.begin() as session:
            await mailboxes.disconnect(session, account_id=account_id, mailbox_id=jim["id"])
            seen_inside.append(int(await session.scalar(select(func.count()).select_from(Event)) or 0))
            raise RuntimeError("the transaction fails after the change")

    with pytest.raises(RuntimeError, match="fails after the change"):
        await disconnect_then_fail()
    assert seen_inside == [before + 1]  # the event was written, inside the transaction
    assert await event_count(state) == before
    assert (await client.get(f"{MAILBOXES}/{jim['id']}", headers=headers(api_key))).json()[
        "status"
    ] == "ACTIVE"
    # A refused deletion (an ACTIVE mailbox uses the credential) records nothing either.
    refused = await client.delete(f"{CREDENTIALS}/{credential['credential_id']}", headers=headers(api_key))
    assert_code(refused, "MICROSOFT_GRAPH_CREDENTIAL_IN_USE")
    assert await event_count(state) == before


async def test_purge_deletes_only_what_is_older_than_the_cutoff_in_batches(
    client: httpx.AsyncClient, api_key: str, state: AppState
) -> None:
    credential = await create_credential(client, api_key=api_key)
    url = f"{CREDENTIALS}/{credential['credential_id']}"
    for number in range(6):
        await client.patch(url, json={"name": f"n{number}"}, headers=headers(api_key))
    events = await stream(client, api_key)
    old = [event["id"] for event in events[:5]]
    now = datetime.now(UTC)
    async with state.transactions.begin() as session:
        await session.execute(
            update(Event).where(Event.id.in_(old)).values(occurred_at=now - timedelta(days=31))
        )
    async with state.sessions() as session:
        cutoff = retention_cutoff(retention_days=30, now=now)
        deleted = await purge_events(session, older_than=cutoff, batch=2)
    assert deleted == 5
    assert [event["id"] for event in await stream(client, api_key)] == [event["id"] for event in events[5:]]
    async with state.sessions() as session:  # nothing left to purge: a no-op
        assert await purge_events(session, older_than=now - timedelta(days=30)) == 0


async def test_the_hourly_purge_task_keeps_30_days(
    client: httpx.AsyncClient, api_key: str, state: AppState
) -> None:
    """open_state registers `events.purge` on the engine; its run removes what is past the retention only."""
    task = state.work.periodic[PURGE_TASK]
    assert task.seconds == 3600
    credential = await create_credential(client, api_key=api_key)
    await client.patch(
        f"{CREDENTIALS}/{credential['credential_id']}", json={"name": "n"}, headers=headers(api_key)
    )
    created, updated = await stream(client, api_key)
    now = datetime.now(UTC)
    async with state.transactions.begin() as session:
        await session.execute(
            update(Event)
            .where(Event.id == created["id"])
            .values(occurred_at=now - timedelta(days=30, hours=1))
        )
        await session.execute(
            update(Event)
            .where(Event.id == updated["id"])
            .values(occurred_at=now - timedelta(days=29, hours=23))
        )
    await task.handler()
    assert [event["id"] for event in await stream(client, api_key)] == [updated["id"]]


def test_retention_is_at_least_30_days() -> None:
    now = datetime(2026, 12, 2, tzinfo=UTC)
    assert retention_cutoff(retention_days=90, now=now) == now - timedelta(days=90)
    assert retention_cutoff(retention_days=7, now=now) == now - timedelta(days=30)
    assert Settings().event_retention_days == 30
    with pytest.raises(ValidationError, match="event_retention_days"):
        Settings(event_retention_days=29)
