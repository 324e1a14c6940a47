"""Webhook subscriptions over HTTP: the secret shown once and stored sealed, CRUD, input limits, codes."""

from __future__ import annotations

import asyncio
import base64
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from m365connect.crypto import KeyFileMissing, SecretBox, SecretBoxError, generate_key, parse_keys
from m365connect.events.service import record_event
from m365connect.events.types import SUBSCRIBABLE, EventType
from m365connect.settings import Settings
from m365connect.state import AppState, load_secret_box
from m365connect.webhooks import sealing
from m365connect.webhooks.models import Webhook
from m365connect.webhooks.service import MAX_WEBHOOKS_PER_ACCOUNT
from tests.factories import WEBHOOKS
from tests.helpers import assert_code, assert_generic_error, headers
from tests.webhooks.support import FakeResolver, api_over, with_webhooks

URL = "https://hooks.example.com/m365connect"


async def create(client: httpx.AsyncClient, api_key: str, **body: Any) -> dict[str, Any]:
    """POST a subscription (asserting the 201)."""
    response = await client.post(WEBHOOKS, json={"url": URL, **body}, headers=headers(api_key))
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def stored(state: AppState, webhook_id: int) -> Webhook:
    async with state.sessions() as session:
        row = await session.get(Webhook, webhook_id)
        assert row is not None
        return row


async def test_the_secret_is_shown_once_and_stored_sealed(
    strict_client: httpx.AsyncClient, strict_state: AppState, resolver: FakeResolver, api_key: str
) -> None:
    resolver.set("hooks.example.com", ["93.184.215.14"])
    created = await create(strict_client, api_key, event_types=["mailbox.failing"], description="Ops")
    secret = created.pop("secret")
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == 32
    assert created == {
        "id": created["id"],
        "url": URL,
        "event_types": ["mailbox.failing"],
        "description": "Ops",
        "enabled": True,
        "created_at": created["created_at"],
    }
    one = await strict_client.get(f"{WEBHOOKS}/{created['id']}", headers=headers(api_key))
    listed = await strict_client.get(WEBHOOKS, headers=headers(api_key))
    assert one.json() == created
    assert listed.json() == {"webhooks": [created]}
    assert secret not in one.text + listed.text
    row = await stored(strict_state, created["id"])
    assert secret.encode() not in row.secret_ciphertext
    assert sealing.open_secret(strict_state.box, row) == secret


async def test_secrets_are_new_each_time_and_bound_to_their_row(
    hooks_client: httpx.AsyncClient, hooks_state: AppState, resolver: FakeResolver, api_key: str
) -> None:
    resolver.set("hooks.example.com", ["93.184.215.14"])
    first, second = await create(hooks_client, api_key), await create(hooks_client, api_key)
    assert first["secret"] != second["secret"]
    row = await stored(hooks_state, second["id"])
    row.id = first["id"]  # a ciphertext moved to another row does not open there
    with pytest.raises(SecretBoxError, match="does not open"):
        sealing.open_secret(hooks_state.box, row)


async def test_a_subscription_starts_at_the_newest_event(
    hooks_client: httpx.AsyncClient, hooks_state: AppState, resolver: FakeResolver, api_key: str
) -> None:
    resolver.set("hooks.example.com", ["93.184.215.14"])
    before = await create(hooks_client, api_key)
    account_id = (await stored(hooks_state, before["id"])).account_id
    async with hooks_state.transactions.begin() as session:
        event = await record_event(session, account_id=account_id, type=EventType.MAILBOX_FAILING, data={})
    after = await create(hooks_client, api_key)
    assert (await stored(hooks_state, before["id"])).last_dispatched_event_id == 0
    assert (await stored(hooks_state, after["id"])).last_dispatched_event_id == event.id


async def test_patch_changes_the_fields_sent_and_delete_removes(
    hooks_client: httpx.AsyncClient, resolver: FakeResolver, api_key: str
) -> None:
    resolver.set("hooks.example.com", ["93.184.215.14"])
    resolver.set("other.example.com", ["93.184.215.15"])
    created = await create(hooks_client, api_key, description="Ops")
    url = f"{WEBHOOKS}/{created['id']}"
    changed = await hooks_client.patch(
        url,
        json={"url": "https://other.example.com/x", "event_types": ["credential.expired"], "enabled": False},
        headers=headers(api_key),
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["url"] == "https://other.example.com/x"
    assert changed.json()["event_types"] == ["credential.expired"]
    assert changed.json()["enabled"] is False
    assert changed.json()["description"] == "Ops"  # not sent, not changed
    cleared = await hooks_client.patch(
        url, json={"event_types": None, "description": None}, headers=headers(api_key)
    )
    assert (cleared.json()["event_types"], cleared.json()["description"]) == (None, None)
    assert (await hooks_client.delete(url, headers=headers(api_key))).status_code == 204
    assert_generic_error(await hooks_client.get(url, headers=headers(api_key)), status=404, title="Not Found")
    assert_generic_error(
        await hooks_client.delete(url, headers=headers(api_key)), status=404, title="Not Found"
    )


async def test_reenabling_starts_at_the_newest_event(
    hooks_client: httpx.AsyncClient, hooks_state: AppState, resolver: FakeResolver, api_key: str
) -> None:
    resolver.set("hooks.example.com", ["93.184.215.14"])
    created = await create(hooks_client, api_key)
    url = f"{WEBHOOKS}/{created['id']}"
    await hooks_client.patch(url, json={"enabled": False}, headers=headers(api_key))
    account_id = (await stored(hooks_state, created["id"])).account_id
    async with hooks_state.transactions.begin() as session:
        event = await record_event(session, account_id=account_id, type=EventType.MAILBOX_FAILING, data={})
    assert (await stored(hooks_state, created["id"])).last_dispatched_event_id < event.id
    await hooks_client.patch(url, json={"enabled": True}, headers=headers(api_key))
    assert (await stored(hooks_state, created["id"])).last_dispatched_event_id == event.id


async def test_event_types_are_checked(
    hooks_client: httpx.AsyncClient, resolver: FakeResolver, api_key: str
) -> None:
    resolver.set("hooks.example.com", ["93.184.215.14"])
    for wrong in (["mailbox.exploded"], ["webhook.test"], ["mailbox.failing", "MAILBOX.FAILING"]):
        response = await hooks_client.post(
            WEBHOOKS, json={"url": URL, "event_types": wrong}, headers=headers(api_key)
        )
        assert_code(response, "UNKNOWN_EVENT_TYPE")
    every = sorted(str(t) for t in SUBSCRIBABLE)
    created = await create(hooks_client, api_key, event_types=[*reversed(every), every[0]])
    assert created["event_types"] == every  # sorted, each once
    patched = await hooks_client.patch(
        f"{WEBHOOKS}/{created['id']}", json={"event_types": ["nope"]}, headers=headers(api_key)
    )
    assert_code(patched, "UNKNOWN_EVENT_TYPE")
    assert (await hooks_client.get(WEBHOOKS, headers=headers(api_key))).json()["webhooks"] == [
        {key: value for key, value in created.items() if key != "secret"}
    ]
    assert (await hooks_client.get(WEBHOOKS, headers=headers(api_key))).json()["webhooks"][0][
        "event_types"
    ] == every


async def test_malformed_bodies_are_400s_that_name_the_field(
    hooks_client: httpx.AsyncClient, api_key: str
) -> None:
    cases: list[tuple[Any, str]] = [
        ({}, "Field 'url' is required"),
        ({"url": 5}, "Field 'url' is invalid"),
        ({"url": "https://a.example.com/\n"}, "must not contain control characters"),
        ({"url": "https://a.example.com/" + "x" * 2048}, "at most 2048 characters"),
        ({"url": URL, "event_types": []}, "Field 'event_types' is invalid: List should have at least 1 item"),
        ({"url": URL, "event_types": "mailbox.failing"}, "Field 'event_types' is invalid"),
        ({"url": URL, "event_types": ["x"] * 51}, "at most 50 items"),
        ({"url": URL, "description": "d" * 201}, "at most 200 characters"),
        ([], "The request body must be a JSON object"),
    ]
    for body, detail in cases:
        response = await hooks_client.post(WEBHOOKS, json=body, headers=headers(api_key))
        assert_generic_error(response, status=400, title="Bad Request")
        assert detail in response.json()["detail"], (body, response.json())
    bad_json = await hooks_client.post(
        WEBHOOKS, content=b"{", headers={**headers(api_key), "content-type": "application/json"}
    )
    assert_generic_error(bad_json, status=400, title="Bad Request")


async def test_patch_refuses_empty_and_null_where_null_means_nothing(
    hooks_client: httpx.AsyncClient, resolver: FakeResolver, api_key: str
) -> None:
    resolver.set("hooks.example.com", ["93.184.215.14"])
    url = f"{WEBHOOKS}/{(await create(hooks_client, api_key))['id']}"
    for body, detail in (
        ({}, "Send at least one of 'url', 'event_types', 'description', 'enabled'"),
        ({"url": None}, "Field 'url' must not be null"),
        ({"enabled": None}, "Field 'enabled' must not be null"),
        ({"enabled": "yes"}, "Field 'enabled' is invalid"),
    ):
        response = await hooks_client.patch(url, json=body, headers=headers(api_key))
        assert_generic_error(response, status=400, title="Bad Request")
        assert detail in response.json()["detail"]


async def test_urls_are_checked_at_create_and_patch(
    strict_client: httpx.AsyncClient, resolver: FakeResolver, api_key: str
) -> None:
    resolver.set("hooks.example.com", ["93.184.215.14"])
    resolver.set("internal.example.com", ["10.0.0.5"])
    for url in (
        "http://hooks.example.com/x",
        "https://127.0.0.1/x",
        "https://10.1.2.3/x",
        "https://169.254.169.254/latest/meta-data/",
        "https://[::1]/x",
        "https://[::ffff:10.0.0.1]/x",
        "https://internal.example.com/x",
        "https://nowhere.example.com/x",
        "https://u:p@hooks.example.com/x",
        "https://hooks.example.com:8443/x",
        "not a url",
    ):
        response = await strict_client.post(WEBHOOKS, json={"url": url}, headers=headers(api_key))
        assert_code(response, "INVALID_WEBHOOK_URL")
    created = await create(strict_client, api_key)
    patched = await strict_client.patch(
        f"{WEBHOOKS}/{created['id']}",
        json={"url": "https://internal.example.com/x"},
        headers=headers(api_key),
    )
    assert_code(patched, "INVALID_WEBHOOK_URL")
    again = await strict_client.get(f"{WEBHOOKS}/{created['id']}", headers=headers(api_key))
    assert again.json()["url"] == URL


async def test_a_name_that_the_dns_server_resolves_to_a_private_address_is_refused(
    settings: Settings, state: AppState, api_key: str
) -> None:
    """Through the service's own resolver asking the simulator's DNS server (M365CONNECT_DNS_NAMESERVERS):
    mail.adventure-works.com has an A record in 198.51.100.0/24, a documentation network."""
    assert [str(a) for a in await state.webhooks.resolver.resolve("mail.adventure-works.com")] == [
        "198.51.100.25"
    ]
    async with api_over(settings, with_webhooks(state, allow_private=False)) as client:
        response = await client.post(
            WEBHOOKS, json={"url": "https://mail.adventure-works.com/hook"}, headers=headers(api_key)
        )
    assert_code(response, "INVALID_WEBHOOK_URL")


async def test_an_account_has_at_most_twenty_subscriptions(
    hooks_client: httpx.AsyncClient, resolver: FakeResolver, api_key: str, other_api_key: str
) -> None:
    resolver.set("hooks.example.com", ["93.184.215.14"])
    for _ in range(MAX_WEBHOOKS_PER_ACCOUNT):
        await create(hooks_client, api_key)
    response = await hooks_client.post(WEBHOOKS, json={"url": URL}, headers=headers(api_key))
    assert_code(response, "TOO_MANY_WEBHOOKS")
    await create(hooks_client, other_api_key)  # per account


async def test_accounts_are_isolated(
    hooks_client: httpx.AsyncClient, resolver: FakeResolver, api_key: str, other_api_key: str
) -> None:
    resolver.set("hooks.example.com", ["93.184.215.14"])
    mine = await create(hooks_client, api_key)
    theirs = headers(other_api_key)
    assert (await hooks_client.get(WEBHOOKS, headers=theirs)).json() == {"webhooks": []}
    for target in (mine["id"], 987654):
        url = f"{WEBHOOKS}/{target}"
        for response in (
            await hooks_client.get(url, headers=theirs),
            await hooks_client.patch(url, json={"enabled": False}, headers=theirs),
            await hooks_client.delete(url, headers=theirs),
            await hooks_client.get(f"{url}/deliveries", headers=theirs),
            await hooks_client.post(f"{url}/test", headers=theirs),
        ):
            assert_generic_error(
                response, status=404, title="Not Found", detail="Requested resource does not exist"
            )
    still = await hooks_client.get(f"{WEBHOOKS}/{mine['id']}", headers=headers(api_key))
    assert still.json()["enabled"] is True


async def test_every_webhook_route_needs_the_api_key(hooks_client: httpx.AsyncClient) -> None:
    for method, path in (
        ("GET", WEBHOOKS),
        ("POST", WEBHOOKS),
        ("GET", f"{WEBHOOKS}/1"),
        ("PATCH", f"{WEBHOOKS}/1"),
        ("DELETE", f"{WEBHOOKS}/1"),
        ("GET", f"{WEBHOOKS}/1/deliveries"),
        ("POST", f"{WEBHOOKS}/1/test"),
    ):
        response = await hooks_client.request(method, path, json={"url": URL})
        assert_generic_error(response, status=401, title="Unauthorized", detail="Invalid api key")


async def test_encryption_rotate_reseals_webhook_secrets(
    hooks_client: httpx.AsyncClient, hooks_state: AppState, resolver: FakeResolver, api_key: str
) -> None:
    resolver.set("hooks.example.com", ["93.184.215.14"])
    created = await create(hooks_client, api_key)
    new_key = generate_key()
    old_keys = hooks_state.settings.encryption_keys or ""
    ring = SecretBox(parse_keys(f"{new_key},{old_keys}"))
    async with hooks_state.transactions.begin() as session:
        report = await sealing.reseal_all(session, ring)
    assert (report.resealed, report.total, report.failures) == (1, 1, [])
    row = await stored(hooks_state, created["id"])
    only_new = SecretBox(parse_keys(new_key))
    assert sealing.open_secret(only_new, row) == created["secret"]
    async with hooks_state.sessions() as session:
        assert (await session.scalars(select(Webhook.id))).all() == [created["id"]]


async def test_a_lost_key_file_beside_webhook_secrets_is_refused(
    hooks_client: httpx.AsyncClient,
    hooks_state: AppState,
    resolver: FakeResolver,
    api_key: str,
    settings: Settings,
    tmp_path: Path,
) -> None:
    """No client secret is stored, only a webhook's: a new key would still open nothing, so none is made."""
    resolver.set("hooks.example.com", ["93.184.215.14"])
    await create(hooks_client, api_key)
    lost = tmp_path / "lost" / "m365connect.key"
    keyless = settings.model_copy(update={"encryption_keys": None, "key_file": lost})
    async with hooks_state.sessions() as session:
        with pytest.raises(KeyFileMissing):
            await load_secret_box(keyless, session)
    assert not lost.exists()


async def test_concurrent_creates_stop_at_the_limit(
    hooks_client: httpx.AsyncClient, resolver: FakeResolver, api_key: str
) -> None:
    resolver.set("hooks.example.com", ["93.184.215.14"])
    for _round in range(2):
        responses = await asyncio.gather(
            *(
                hooks_client.post(WEBHOOKS, json={"url": URL}, headers=headers(api_key))
                for _ in range(MAX_WEBHOOKS_PER_ACCOUNT + 5)
            )
        )
        statuses = sorted(response.status_code for response in responses)
        listed = (await hooks_client.get(WEBHOOKS, headers=headers(api_key))).json()["webhooks"]
        assert len(listed) == MAX_WEBHOOKS_PER_ACCOUNT, statuses
        assert 500 not in statuses
        for webhook in listed:
            await hooks_client.delete(f"{WEBHOOKS}/{webhook['id']}", headers=headers(api_key))


def test_api_md_lists_every_subscribable_type() -> None:
    section = (Path(__file__).resolve().parents[2] / "docs" / "api.md").read_text().split("## Webhooks", 1)[1]
    listed = section.split("The types:", 1)[1].split("`webhook.test`", 1)[0]
    assert set(re.findall(r"`([a-z_.]+)`", listed)) == {str(t) for t in SUBSCRIBABLE}


async def test_ids_outside_the_databases_range_are_404(hooks_client: httpx.AsyncClient, api_key: str) -> None:
    for target in ("0", "-1", str(2**63), "abc"):
        for method, suffix in (
            ("GET", ""),
            ("PATCH", ""),
            ("DELETE", ""),
            ("GET", "/deliveries"),
            ("POST", "/test"),
        ):
            response = await hooks_client.request(
                method, f"{WEBHOOKS}/{target}{suffix}", json={"enabled": True}, headers=headers(api_key)
            )
            assert_generic_error(response, status=404, title="Not Found")
    for page in ("-1", "x", "10000001"):
        response = await hooks_client.get(f"{WEBHOOKS}/1/deliveries?page={page}", headers=headers(api_key))
        assert_generic_error(response, status=400, title="Bad Request")
