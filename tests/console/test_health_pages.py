"""Health in the console (over the real ASGI stack, both databases): "verify now" on a mailbox and on a
credential through health.service, the health filter, and each failing mailbox with its error explained."""

from __future__ import annotations

import html
from collections.abc import AsyncIterator

import httpx
import pytest

from m365connect.app import create_app
from m365connect.codes import ErrorCode
from m365connect.explanations import EXPLANATIONS
from m365connect.settings import Settings
from m365connect.simulator import FakeMicrosoft
from m365connect.state import AppState
from tests.console.pages import sign_in, signed_in_csrf
from tests.factories import bulk, create_credential

JIM, PAM = "jim@contoso.com", "pam@contoso.com"
LIST = "/console/mailboxes"


@pytest.fixture
async def browser(settings: Settings, state: AppState, api_key: str) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, state=state)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://m365connect.test") as http:
        assert (await sign_in(http, api_key)).status_code == 303
        yield http


def listed(page: str) -> list[str]:
    """The addresses of the mailbox rows shown."""
    return [address for address in (JIM, PAM) if f'<th scope="row">{address}' in page]


async def test_verify_now_shows_a_failing_mailbox_with_its_error_explained_and_the_health_filter_finds_it(
    browser: httpx.AsyncClient, client: httpx.AsyncClient, api_key: str, microsoft: FakeMicrosoft
) -> None:
    credential = await create_credential(client, api_key=api_key)
    cid = credential["credential_id"]
    connected = await bulk(client, api_key=api_key, emails=[JIM, PAM], credential_id=cid)
    jim = next(item["id"] for item in connected.json() if item["email"] == JIM)
    token = await signed_in_csrf(browser)
    before = await browser.get(f"{LIST}?health=FAILING")
    assert listed(before.text) == []

    microsoft.change_user("contoso.com", JIM, account_enabled=False)
    verified = await browser.post(f"{LIST}/{jim}/verify", data={"csrf_token": token})
    assert verified.status_code == 303
    assert "done=verified-failing" in verified.headers["location"]
    failing = await browser.get(f"{LIST}?health=FAILING")
    assert listed(failing.text) == [JIM]
    text = html.unescape(failing.text)
    assert f'id="mailbox-{jim}-failure"' in failing.text
    assert EXPLANATIONS[ErrorCode.MAILBOX_DISABLED].meaning in text
    assert EXPLANATIONS[ErrorCode.MAILBOX_DISABLED].render_fix().split("(")[0].strip() in text
    assert listed((await browser.get(f"{LIST}?health=OK")).text) == [PAM]

    microsoft.change_user("contoso.com", JIM, account_enabled=True)
    again = await browser.post(f"{LIST}/{jim}/verify", data={"csrf_token": token})
    assert "done=verified-ok" in again.headers["location"]
    assert listed((await browser.get(f"{LIST}?health=FAILING")).text) == []
    assert listed((await browser.get(f"{LIST}?health=OK")).text) == [JIM, PAM]
    bad = await browser.get(f"{LIST}?health=SICK")
    assert bad.status_code == 400


async def test_verify_now_on_a_credential_asks_microsoft_and_records_the_check(
    browser: httpx.AsyncClient, client: httpx.AsyncClient, api_key: str, microsoft: FakeMicrosoft
) -> None:
    credential = await create_credential(client, api_key=api_key)
    cid = credential["credential_id"]
    token = await signed_in_csrf(browser)
    asked = microsoft.stats.token_requests
    answer = await browser.post(f"/console/credentials/{cid}/verify", data={"csrf_token": token})
    assert answer.status_code == 303
    assert answer.headers["location"] == "/console/credentials?done=verified"
    assert microsoft.stats.token_requests > asked
    stored = await client.get("/rest/v2/mailboxes/microsoft/credentials", headers={"x-api-key": api_key})
    checked_at = stored.json()["credentials"][0]["checked_at"]
    assert checked_at is not None
    assert f"(checked {checked_at})" in (await browser.get("/console/credentials")).text
    refused = await browser.post(f"/console/credentials/{cid}/verify", data={})
    assert refused.status_code == 403
