"""POST /rest/v2/mailboxes/microsoft/bulk (API.md §3) against the simulator's Graph and DNS."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from m365connect.app import create_app
from m365connect.mailboxes.models import Mailbox
from m365connect.settings import Settings
from m365connect.simulator import FakeMicrosoft
from m365connect.state import AppState, open_state
from tests import scenario_values as sv
from tests.factories import BULK, FABRIKAM, MAILBOXES, bulk, create_credential
from tests.helpers import assert_code, headers

SEEDS = Path(__file__).resolve().parents[2] / "shared" / "spec" / "seeds"


def by_email(results: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Results keyed by submitted address (the tests use unique addresses)."""
    return {item["email"]: item for item in results}


async def test_every_per_item_outcome_in_request_order(
    client: httpx.AsyncClient, api_key: str, state: AppState, microsoft: FakeMicrosoft
) -> None:
    credential = await create_credential(client, api_key=api_key)
    emails = [
        "jim@contoso.com",
        "jimothy@contoso.com",
        "toby@contoso.com",
        "creed@contoso.com",
        "holly@northwindtraders.com",
        "kevin@contoso.com",
        "nobody@contoso.com",
        "not-an-email",
        " JIM@Contoso.com ",
        "oscar@contoso.com",
        "nate.o'neil@contoso.com",
    ]
    response = await bulk(client, api_key=api_key, emails=emails, credential_id=credential["credential_id"])
    assert response.status_code == 207
    results = response.json()
    assert [item["email"] for item in results] == [email.strip() for email in emails]
    outcome = [(item["success"], item["error"]) for item in results]
    assert outcome == [
        (True, None),
        (False, "WRONG_ALIAS"),
        (False, "MAILBOX_DISABLED"),
        (False, "NO_EXCHANGE_MAILBOX"),
        (False, "NO_EXCHANGE_MAILBOX"),
        (False, "MAILBOX_ACCESS_DENIED"),
        (False, "MAILBOX_NOT_FOUND"),
        (False, "INVALID_EMAIL"),
        (False, "DUPLICATE_EMAIL"),
        (True, None),
        (False, "WRONG_ALIAS"),
    ]
    jim, alias = results[0], results[1]
    assert set(jim) == {"success", "id", "email", "name", "deliverability", "error", "mailbox_type"}
    assert jim["name"] == "Jim Halpert"
    assert jim["deliverability"] == {
        "spf_correct": True,
        "dkim_correct": True,
        "dmarc_correct": True,
        "spf_reason": "ok",
        "dkim_reason": "ok",
        "dmarc_reason": "ok",
    }
    assert isinstance(jim["id"], int)
    assert alias == {
        "success": False,
        "id": None,
        "email": "jimothy@contoso.com",
        "name": "Jim Halpert",
        "deliverability": None,
        "error": "WRONG_ALIAS",
        "mailbox_type": "user",
        "primary_email": "jim@contoso.com",
    }
    assert results[10]["primary_email"] == "nate@contoso.com"
    assert all("primary_email" not in item for item in results if item["error"] != "WRONG_ALIAS")
    async with state.sessions() as session:
        rows = (await session.scalars(select(Mailbox).order_by(Mailbox.id))).all()
    assert [(row.email, row.status, row.credential_id) for row in rows] == [
        ("jim@contoso.com", "ACTIVE", credential["credential_id"]),
        ("oscar@contoso.com", "ACTIVE", credential["credential_id"]),
    ]
    jim_user = next(
        u for u in microsoft.scenario.tenants[0].users if u.user_principal_name == "jim@contoso.com"
    )
    assert rows[0].microsoft_user_id == jim_user.effective_id(microsoft.scenario.tenants[0].id)


async def test_all_connected_is_201_and_display_name_wins(client: httpx.AsyncClient, api_key: str) -> None:
    await create_credential(client, api_key=api_key)
    body = {
        "accounts": [
            {"mailbox_email": "pam@contoso.com", "display_name": "Pam B."},
            {"mailbox_email": "jim@contoso.com"},
        ]
    }
    response = await client.post(BULK, json=body, headers=headers(api_key))
    assert response.status_code == 201
    assert [(item["success"], item["name"]) for item in response.json()] == [
        (True, "Pam B."),
        (True, "Jim Halpert"),
    ]


async def test_all_failed_is_207(client: httpx.AsyncClient, api_key: str) -> None:
    await create_credential(client, api_key=api_key)
    response = await bulk(client, api_key=api_key, emails=["nobody@contoso.com"])
    assert response.status_code == 207
    assert response.json()[0]["error"] == "MAILBOX_NOT_FOUND"


async def test_idempotent_re_add_and_reconnect_after_disconnect(
    client: httpx.AsyncClient, api_key: str, microsoft: FakeMicrosoft
) -> None:
    credential = await create_credential(client, api_key=api_key)
    first = (await bulk(client, api_key=api_key, emails=["jim@contoso.com"])).json()[0]
    microsoft.stats.reset()
    again = await bulk(client, api_key=api_key, emails=["Jim@contoso.com", "pam@contoso.com"])
    assert again.status_code == 201
    re_added, pam = again.json()
    # The stored flags; the reasons were not kept, so they are null on an already_connected result.
    stored = {**first["deliverability"], "spf_reason": None, "dkim_reason": None, "dmarc_reason": None}
    assert re_added == {
        **first,
        "email": "Jim@contoso.com",
        "deliverability": stored,
        "already_connected": True,
    }
    assert "already_connected" not in pam
    assert microsoft.stats.batch_items <= 2  # only pam asked Graph (lookup + probe)
    assert (
        await client.delete(f"/rest/v2/mailboxes/microsoft/{first['id']}", headers=headers(api_key))
    ).status_code == 204
    reconnected = (await bulk(client, api_key=api_key, emails=["jim@contoso.com"])).json()[0]
    assert reconnected["success"]
    assert reconnected["id"] != first["id"]
    assert "already_connected" not in reconnected
    listed = (await client.get("/rest/v2/mailboxes/microsoft", headers=headers(api_key))).json()["content"]
    assert [(m["id"], m["status"], m["credential_id"]) for m in listed] == [
        (first["id"], "DISCONNECTED", credential["credential_id"]),
        (pam["id"], "ACTIVE", credential["credential_id"]),
        (reconnected["id"], "ACTIVE", credential["credential_id"]),
    ]


async def test_same_mailbox_through_another_credential(client: httpx.AsyncClient, api_key: str) -> None:
    working = await create_credential(client, api_key=api_key)
    reader = await create_credential(
        client, api_key=api_key, client_id=sv.READER_APP, client_secret=sv.READER_SECRET
    )
    await bulk(client, api_key=api_key, emails=["jim@contoso.com"], credential_id=working["credential_id"])
    response = await bulk(
        client,
        api_key=api_key,
        emails=["jim@contoso.com", "pam@contoso.com"],
        credential_id=reader["credential_id"],
    )
    # The reader has no Mail.Send anywhere: the send probe finds Exchange refusing it for pam (API.md §3)
    assert [item["error"] for item in response.json()] == [
        "MAILBOX_ALREADY_CONNECTED",
        "MAILBOX_ACCESS_DENIED",
    ]


async def test_missing_user_read_permission(client: httpx.AsyncClient, api_key: str) -> None:
    await create_credential(
        client, api_key=api_key, client_id=sv.UNCONSENTED_APP, client_secret=sv.UNCONSENTED_SECRET
    )
    response = await bulk(client, api_key=api_key, emails=["jim@contoso.com", "pam@contoso.com"])
    assert response.status_code == 207
    assert [item["error"] for item in response.json()] == ["MISSING_PERMISSIONS", "MISSING_PERMISSIONS"]


@pytest.mark.parametrize(
    ("email", "flags", "reasons"),
    [
        # old *.onmicrosoft.com DKIM form; DMARC quarantine
        ("erin@fabrikam.com", (True, True, True), ("ok", "ok", "ok")),
        # no SPF; no DMARC record
        ("nellie@tailspintoys.com", (False, True, False), ("no_record", "ok", "no_record")),
        # two SPF records; two DMARC records
        ("gabe@wingtiptoys.com", (False, True, False), ("multiple_records", "ok", "multiple_records")),
        # SPF without Microsoft; DMARC p=none
        ("andy@adventure-works.com", (False, True, True), ("no_microsoft_include", "ok", "ok")),
        # more than 10 lookups; DMARC adkim=strict
        ("darryl@proseware.com", (False, True, False), ("too_many_lookups", "ok", "invalid_syntax")),
        # +all; DMARC rua without p (p=none)
        ("jan@wideworldimporters.com", (False, True, True), ("plus_all", "ok", "ok")),
        # selector2 CNAME missing
        ("stanley@fourthcoffee.com", (True, False, True), ("ok", "selector2_cname_missing", "ok")),
        # empty p=
        ("phyllis@lucernepublishing.com", (True, False, True), ("ok", "key_revoked", "ok")),
        # DMARC only at the organizational domain
        ("kelly@sales.fabrikam.com", (True, False, True), ("ok", "not_configured", "ok")),
        # SERVFAIL
        ("meredith@broken.example", (False, False, False), ("dns_error", "dns_error", "dns_error")),
    ],
)  # fmt: skip
async def test_deliverability_variants(
    client: httpx.AsyncClient,
    api_key: str,
    email: str,
    flags: tuple[bool, bool, bool],
    reasons: tuple[str, str, str],
) -> None:
    """Each flag with its reason: a DNS failure (`dns_error`) and a wrong record are told apart."""
    await create_credential(client, api_key=api_key, **FABRIKAM)
    response = await bulk(client, api_key=api_key, emails=[email])
    assert response.status_code == 201, response.text
    stored = dict(zip(("spf_correct", "dkim_correct", "dmarc_correct"), flags, strict=True))
    why = dict(zip(("spf_reason", "dkim_reason", "dmarc_reason"), reasons, strict=True))
    assert response.json()[0]["deliverability"] == stored | why
    mailbox = await client.get(f"{MAILBOXES}/{response.json()[0]['id']}", headers=headers(api_key))
    assert mailbox.json()["deliverability"] == stored  # the flags are stored with the mailbox
    again = await bulk(client, api_key=api_key, emails=[email])
    assert again.json()[0]["already_connected"] is True
    assert again.json()[0]["deliverability"] == stored | dict.fromkeys(why)  # stored flags, no reasons


async def test_each_domain_is_checked_once_per_request(
    client: httpx.AsyncClient, api_key: str, microsoft: FakeMicrosoft
) -> None:
    await create_credential(client, api_key=api_key)
    microsoft.stats.reset()
    await bulk(client, api_key=api_key, emails=["jim@contoso.com", "pam@contoso.com", "oscar@contoso.com"])
    one_domain = microsoft.stats.dns_queries
    assert 0 < one_domain <= 6


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"not json",
        b"[]",
        b'"x"',
        b"{}",
        b'{"accounts": "jim@contoso.com"}',
        b'{"accounts": null}',
        b'{"accounts": ["jim@contoso.com"]}',
        b'{"accounts": [{}]}',
        b'{"accounts": [{"mailbox_email": 5}]}',
        b'{"accounts": [{"mailbox_email": null}]}',
        b'{"accounts": [{"mailbox_email": "a@b.com", "display_name": 7}]}',
        b'{"credential_id": "12", "accounts": [{"mailbox_email": "a@b.com"}]}',
        b'{"credential_id": true, "accounts": [{"mailbox_email": "a@b.com"}]}',
        b'{"credential_id": 1.5, "accounts": [{"mailbox_email": "a@b.com"}]}',
        b'{"auth_type": 1, "accounts": [{"mailbox_email": "a@b.com"}]}',
    ],
)
async def test_malformed_bodies_are_400_with_an_empty_body(
    client: httpx.AsyncClient, api_key: str, content: bytes
) -> None:
    response = await client.post(
        BULK, content=content, headers={**headers(api_key), "content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.content == b""


async def test_request_level_422s(
    client: httpx.AsyncClient, api_key: str, other_api_key: str, settings: Settings
) -> None:
    one = [{"mailbox_email": "jim@contoso.com"}]
    h = headers(api_key)
    assert_code(await client.post(BULK, json={"accounts": one}, headers=h), "NO_VALID_CREDENTIAL")
    mine = await create_credential(client, api_key=api_key)
    theirs = await create_credential(client, api_key=other_api_key)
    assert_code(
        await client.post(BULK, json={"auth_type": "IMAP", "accounts": one}, headers=h),
        "UNSUPPORTED_AUTH_TYPE",
    )
    assert_code(await client.post(BULK, json={"accounts": []}, headers=h), "EMPTY_ACCOUNTS")
    too_many = [{"mailbox_email": f"u{i}@contoso.com"} for i in range(settings.max_accounts_per_request + 1)]
    assert_code(await client.post(BULK, json={"accounts": too_many}, headers=h), "TOO_MANY_ACCOUNTS")
    for foreign in (theirs["credential_id"], 22334455):
        assert_code(
            await client.post(BULK, json={"credential_id": foreign, "accounts": one}, headers=h),
            "INVALID_CREDENTIAL_ID",
        )
    await create_credential(client, api_key=api_key, **FABRIKAM)
    assert_code(await client.post(BULK, json={"accounts": one}, headers=h), "CREDENTIAL_ID_REQUIRED")
    ok = await client.post(
        BULK, json={"credential_id": mine["credential_id"], "auth_type": None, "accounts": one}, headers=h
    )
    assert ok.status_code == 201


async def test_the_public_pages_request_bodies(client: httpx.AsyncClient, api_key: str) -> None:
    text = (SEEDS / "add-microsoft-mailboxes-in-bulk.txt").read_text()
    start = text.index("Body\n{") + len("Body\n")
    seed: dict[str, Any] = json.JSONDecoder().raw_decode(text[start:])[0]
    assert seed["credential_id"] == 22334455
    assert_code(await client.post(BULK, json=seed, headers=headers(api_key)), "INVALID_CREDENTIAL_ID")
    credential = await create_credential(client, api_key=api_key)
    response = await client.post(
        BULK, json={**seed, "credential_id": credential["credential_id"]}, headers=headers(api_key)
    )
    assert response.status_code == 207
    assert response.json() == [
        {
            "success": False,
            "id": None,
            "email": "jim@example.com",
            "name": "Jimothy H",
            "deliverability": None,
            "error": "MAILBOX_NOT_FOUND",
            "mailbox_type": None,
        },
        {
            "success": False,
            "id": None,
            "email": "michael@example.com",
            "name": "Michael Scarn",
            "deliverability": None,
            "error": "MAILBOX_NOT_FOUND",
            "mailbox_type": None,
        },
    ]


@pytest.fixture
async def impatient_client(settings: Settings, state: AppState) -> AsyncIterator[httpx.AsyncClient]:
    """A client of a service whose bulk deadline is 1.5 s (throttling and outage tests stay fast)."""
    quick = settings.model_copy(update={"bulk_deadline_seconds": 1.5})
    async with open_state(quick) as quick_state:
        app = create_app(quick, state=quick_state)
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://m365connect.test") as http:
            yield http


async def test_throttling_and_outages_past_the_budget_are_per_item(
    impatient_client: httpx.AsyncClient, api_key: str, microsoft: FakeMicrosoft
) -> None:
    await create_credential(impatient_client, api_key=api_key)
    microsoft.faults.graph_retry_after = 0.1
    microsoft.faults.graph_throttle_rate = 1.0
    throttled = await bulk(impatient_client, api_key=api_key, emails=["jim@contoso.com", "pam@contoso.com"])
    assert throttled.status_code == 207
    assert [item["error"] for item in throttled.json()] == ["MICROSOFT_THROTTLED"] * 2
    microsoft.faults.graph_throttle_rate = 0.0
    microsoft.faults.graph_unavailable_rate = 1.0
    down = await bulk(impatient_client, api_key=api_key, emails=["jim@contoso.com"])
    assert [item["error"] for item in down.json()] == ["MICROSOFT_UNAVAILABLE"]
    microsoft.faults.graph_unavailable_rate = 0.0
    assert (await bulk(impatient_client, api_key=api_key, emails=["jim@contoso.com"])).status_code == 201


async def test_throttling_and_503_storms_still_connect_everything(
    client: httpx.AsyncClient, api_key: str, microsoft: FakeMicrosoft
) -> None:
    await create_credential(client, api_key=api_key)
    microsoft.faults.graph_retry_after = 0.05
    microsoft.faults.graph_throttle_rate = 0.3
    microsoft.faults.graph_unavailable_rate = 0.1
    microsoft.faults.seed = 11
    emails = ["jim@contoso.com", "pam@contoso.com", "oscar@contoso.com", "nate@contoso.com"]
    response = await bulk(client, api_key=api_key, emails=emails)
    assert response.status_code == 201, response.text
    assert microsoft.stats.throttled > 0


async def test_token_endpoint_down_during_bulk_is_503(
    client: httpx.AsyncClient, api_key: str, state: AppState, microsoft: FakeMicrosoft
) -> None:
    await create_credential(client, api_key=api_key)
    state.tokens.clear()  # as in a freshly started service: no cached token
    microsoft.faults.token_unavailable_rate = 1.0
    response = await bulk(client, api_key=api_key, emails=["jim@contoso.com"])
    assert response.status_code == 503
    assert response.json()["title"] == "Service Unavailable"
