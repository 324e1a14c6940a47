"""Mailbox reads and disconnection (API.md §4), isolation between accounts on every route."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import select

from m365connect.accounts.models import Account
from m365connect.mailboxes import service
from m365connect.mailboxes.models import Mailbox
from m365connect.simulator import FakeMicrosoft
from m365connect.state import AppState
from tests import scenario_values as sv
from tests.factories import BULK, CREDENTIALS, EVENTS, MAILBOXES, WEBHOOKS, bulk, create_credential
from tests.helpers import assert_code, assert_generic_error, headers


async def test_get_and_list(client: httpx.AsyncClient, api_key: str, microsoft: FakeMicrosoft) -> None:
    credential = await create_credential(client, api_key=api_key)
    jim = (await bulk(client, api_key=api_key, emails=["Jim@Contoso.com"])).json()[0]
    one = await client.get(f"{MAILBOXES}/{jim['id']}", headers=headers(api_key))
    assert one.status_code == 200
    body = one.json()
    user = next(u for u in microsoft.scenario.tenants[0].users if u.user_principal_name == "jim@contoso.com")
    assert body == {
        "id": jim["id"],
        "email": "jim@contoso.com",
        "name": "Jim Halpert",
        "credential_id": credential["credential_id"],
        "microsoft_user_id": user.effective_id(microsoft.scenario.tenants[0].id),
        "status": "ACTIVE",
        "mailbox_type": "user",
        "deliverability": {"spf_correct": True, "dkim_correct": True, "dmarc_correct": True},
        "connected_at": body["connected_at"],
        "disconnected_at": None,
        # Connecting verified it; no check has run since.
        "health": {"state": "OK", "error": None, "checked_at": None, "failing_since": None},
    }
    assert body["connected_at"].endswith("Z")
    page = (await client.get(MAILBOXES, headers=headers(api_key))).json()
    assert page == {
        "content": [body],
        "pagination_data": {"total_elements": 1, "total_pages": 1, "current_page_number": 1, "page_size": 50},
    }


async def test_pagination_and_status_filter(client: httpx.AsyncClient, api_key: str, state: AppState) -> None:
    credential = await create_credential(client, api_key=api_key)
    async with state.sessions() as session:
        account_id = await session.scalar(select(Account.id).where(Account.name == "acme"))
        session.add_all(
            Mailbox(
                account_id=account_id,
                credential_id=credential["credential_id"],
                email=f"user{i}@contoso.com",
                name=None,
                microsoft_user_id=f"id-{i}",
                status="ACTIVE" if i % 3 else "DISCONNECTED",
                spf_correct=True,
                dkim_correct=False,
            )
            for i in range(120)
        )
        await session.commit()
    h = headers(api_key)
    pages = [(await client.get(MAILBOXES, params={"page": n}, headers=h)).json() for n in range(4)]
    assert [len(p["content"]) for p in pages] == [50, 50, 20, 0]
    assert pages[2]["pagination_data"] == {
        "total_elements": 120,
        "total_pages": 3,
        "current_page_number": 3,
        "page_size": service.PAGE_SIZE,
    }
    ids = [m["id"] for p in pages for m in p["content"]]
    assert ids == sorted(ids)
    assert len(set(ids)) == 120
    active = (await client.get(MAILBOXES, params={"status": "ACTIVE"}, headers=h)).json()
    assert active["pagination_data"]["total_elements"] == 80
    assert {m["status"] for m in active["content"]} == {"ACTIVE"}


@pytest.mark.parametrize("query", [{"page": "-1"}, {"page": "x"}, {"status": "GONE"}])
async def test_bad_query_is_400(client: httpx.AsyncClient, api_key: str, query: dict[str, str]) -> None:
    assert_generic_error(
        await client.get(MAILBOXES, params=query, headers=headers(api_key)), status=400, title="Bad Request"
    )


async def test_disconnect_is_idempotent_and_unknown_ids_are_404(
    client: httpx.AsyncClient, api_key: str
) -> None:
    await create_credential(client, api_key=api_key)
    jim = (await bulk(client, api_key=api_key, emails=["jim@contoso.com"])).json()[0]
    url = f"{MAILBOXES}/{jim['id']}"
    assert (await client.delete(url, headers=headers(api_key))).status_code == 204
    assert (await client.delete(url, headers=headers(api_key))).status_code == 204
    gone = (await client.get(url, headers=headers(api_key))).json()
    assert gone["status"] == "DISCONNECTED"
    assert gone["disconnected_at"].endswith("Z")
    for missing in (f"{MAILBOXES}/999999", f"{MAILBOXES}/abc", f"{MAILBOXES}/0"):
        assert_generic_error(
            await client.get(missing, headers=headers(api_key)), status=404, title="Not Found"
        )
        assert_generic_error(
            await client.delete(missing, headers=headers(api_key)), status=404, title="Not Found"
        )


JOBS = f"{BULK}/jobs"
ASYNC = {"Prefer": "respond-async"}


async def test_isolation_matrix(client: httpx.AsyncClient, api_key: str, other_api_key: str) -> None:
    """Account B can neither read, change nor learn of account A's objects, on every route."""
    credential = await create_credential(client, api_key=api_key)
    mailbox = (await bulk(client, api_key=api_key, emails=["jim@contoso.com"])).json()[0]
    b = headers(other_api_key)
    missing_credential, missing_mailbox = 987654, 987654
    for target in (credential["credential_id"], missing_credential):
        patch = await client.patch(f"{CREDENTIALS}/{target}", json={"name": "x"}, headers=b)
        delete = await client.delete(f"{CREDENTIALS}/{target}", headers=b)
        verify = await client.post(f"{CREDENTIALS}/{target}/verify", headers=b)
        for response in (patch, delete, verify):
            assert_generic_error(
                response, status=404, title="Not Found", detail="Requested resource does not exist"
            )
    for target in (mailbox["id"], missing_mailbox):
        for response in (
            await client.get(f"{MAILBOXES}/{target}", headers=b),
            await client.delete(f"{MAILBOXES}/{target}", headers=b),
            await client.post(f"{MAILBOXES}/{target}/verify", headers=b),
        ):
            assert_generic_error(
                response, status=404, title="Not Found", detail="Requested resource does not exist"
            )
    webhook = await client.post(
        WEBHOOKS, json={"url": "https://93.184.215.14/hook"}, headers=headers(api_key)
    )
    assert webhook.status_code == 201, webhook.text
    for target in (webhook.json()["id"], 987654):
        for response in (
            await client.get(f"{WEBHOOKS}/{target}", headers=b),
            await client.patch(f"{WEBHOOKS}/{target}", json={"enabled": False}, headers=b),
            await client.delete(f"{WEBHOOKS}/{target}", headers=b),
            await client.get(f"{WEBHOOKS}/{target}/deliveries", headers=b),
            await client.post(f"{WEBHOOKS}/{target}/test", headers=b),
        ):
            assert_generic_error(
                response, status=404, title="Not Found", detail="Requested resource does not exist"
            )
    job = await client.post(
        BULK, json={"accounts": [{"mailbox_email": "pam@contoso.com"}]}, headers={**headers(api_key), **ASYNC}
    )
    assert job.status_code == 202, job.text
    for target in (job.json()["job_id"], 987654):
        for response in (
            await client.get(f"{JOBS}/{target}", headers=b),
            await client.delete(f"{JOBS}/{target}", headers=b),
            await client.get(f"{JOBS}/{target}/results", headers=b),
        ):
            assert_generic_error(
                response, status=404, title="Not Found", detail="Requested resource does not exist"
            )
    assert (await client.get(JOBS, headers=b)).json()["pagination_data"]["total_elements"] == 0
    job_with_borrowed_credential = await client.post(
        BULK,
        json={
            "credential_id": credential["credential_id"],
            "accounts": [{"mailbox_email": "pam@contoso.com"}],
        },
        headers={**b, **ASYNC},
    )
    assert_code(job_with_borrowed_credential, "INVALID_CREDENTIAL_ID")
    assert (await client.get(CREDENTIALS, headers=b)).json() == {"credentials": []}
    a_events = (await client.get(EVENTS, headers=headers(api_key))).json()["events"]
    assert [event["type"] for event in a_events] == ["credential.created", "mailbox.connected"]
    assert (await client.get(EVENTS, headers=b)).json() == {"events": [], "next_after": 0}
    assert (await client.get(EVENTS, params={"after": 0, "limit": 1000}, headers=b)).json()["events"] == []
    assert (await client.get(MAILBOXES, headers=b)).json()["pagination_data"]["total_elements"] == 0
    assert (await client.get(WEBHOOKS, headers=b)).json() == {"webhooks": []}
    borrowed = {
        "credential_id": credential["credential_id"],
        "accounts": [{"mailbox_email": "pam@contoso.com"}],
    }
    assert_code(await client.post(BULK, json=borrowed, headers=b), "INVALID_CREDENTIAL_ID")
    assert_code(
        await client.post(BULK, json={"accounts": borrowed["accounts"]}, headers=b), "NO_VALID_CREDENTIAL"
    )
    # B's own credential for the same app may connect the same mailbox: addresses are unique per account.
    await create_credential(client, api_key=other_api_key)
    mine_too = (await bulk(client, api_key=other_api_key, emails=["jim@contoso.com"])).json()[0]
    assert mine_too["success"]
    assert mine_too["id"] != mailbox["id"]
    still = await client.get(f"{MAILBOXES}/{mailbox['id']}", headers=headers(api_key))
    assert still.json()["status"] == "ACTIVE"
    # Each account's stream holds its own events only, whatever cursor it sends.
    assert (await client.get(EVENTS, headers=headers(api_key))).json()["events"] == a_events
    b_events = (await client.get(EVENTS, headers=b)).json()["events"]
    assert [event["type"] for event in b_events] == ["credential.created", "mailbox.connected"]
    assert {event["id"] for event in b_events}.isdisjoint(event["id"] for event in a_events)
    assert b_events[1]["data"]["id"] == mine_too["id"]


async def test_a_secret_revoked_in_entra_marks_the_credential_invalid_until_it_works_again(
    client: httpx.AsyncClient, api_key: str, state: AppState, microsoft: FakeMicrosoft
) -> None:
    credential = await create_credential(client, api_key=api_key)
    original = microsoft.scenario
    revoked = original.model_copy(deep=True)
    app = next(a for a in revoked.tenants[0].apps if str(a.client_id) == sv.WORKING_APP)
    app.secrets = [secret for secret in app.secrets if secret.value != sv.WORKING_SECRET]
    microsoft.change_directory(revoked)
    state.tokens.clear()  # a service restarted after the admin deleted the secret
    assert_code(await bulk(client, api_key=api_key, emails=["jim@contoso.com"]), "INVALID_CREDENTIAL_ID")
    listed = (await client.get(CREDENTIALS, headers=headers(api_key))).json()["credentials"]
    assert listed[0]["status"] == "INVALID"
    assert_code(await bulk(client, api_key=api_key, emails=["jim@contoso.com"]), "NO_VALID_CREDENTIAL")
    microsoft.change_directory(original)  # the admin restored it
    healed = await bulk(
        client, api_key=api_key, emails=["jim@contoso.com"], credential_id=credential["credential_id"]
    )
    assert healed.status_code == 201
    assert (await client.get(CREDENTIALS, headers=headers(api_key))).json()["credentials"][0][
        "status"
    ] == "VALID"
