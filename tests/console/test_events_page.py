"""The console's events page (over the real ASGI stack, both databases): newest first, walked with the
"older" and "newer" links to the end and back, filtered by type, linked to the object, one account's
events only, and bad query values answered with 400, never a 500."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest

from m365connect.app import create_app
from m365connect.console import events_router
from m365connect.settings import Settings
from m365connect.state import AppState
from tests.console.pages import sign_in
from tests.factories import CREDENTIALS, EVENTS, MAILBOXES, bulk, create_credential
from tests.helpers import headers

PAGE = "/console/events"
FOUR = ["jim@contoso.com", "pam@contoso.com", "oscar@contoso.com", "nate@contoso.com"]
_ROW = re.compile(r'<tr id="event-(\d+)">')
_LINK = re.compile(r'<a href="(/console/events\?[^"]+)" rel="(prev|next)">')


@pytest.fixture
async def browser(settings: Settings, state: AppState, api_key: str) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, state=state)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://m365connect.test") as http:
        assert (await sign_in(http, api_key)).status_code == 303
        yield http


def rows(page: str) -> list[int]:
    """The event ids shown, in page order."""
    return [int(found) for found in _ROW.findall(page)]


def links(page: str) -> dict[str, str]:
    """The page's "newer" (prev) and "older" (next) links."""
    return {rel: href.replace("&amp;", "&") for href, rel in _LINK.findall(page)}


async def api_ids(client: httpx.AsyncClient, api_key: str) -> list[int]:
    answer = await client.get(EVENTS, params={"limit": 1000}, headers={"x-api-key": api_key})
    assert answer.status_code == 200
    return [event["id"] for event in answer.json()["events"]]


async def test_events_newest_first_walked_older_to_the_end_and_newer_back(
    browser: httpx.AsyncClient, client: httpx.AsyncClient, api_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(events_router, "PAGE_SIZE", 4)
    credential = await create_credential(client, api_key=api_key)
    cid = credential["credential_id"]
    connected = await bulk(client, api_key=api_key, emails=FOUR, credential_id=cid)
    assert connected.status_code == 201, connected.text
    for n in range(5):
        renamed = await client.patch(
            f"{CREDENTIALS}/{cid}", json={"name": f"App {n}"}, headers=headers(api_key)
        )
        assert renamed.status_code == 200, renamed.text
    everything = sorted(await api_ids(client, api_key), reverse=True)
    assert len(everything) == 10  # credential.created, four mailbox.connected, five credential.updated

    first = await browser.get(PAGE)
    assert first.status_code == 200
    assert rows(first.text) == everything[:4]
    assert "prev" not in links(first.text)
    pages = [rows(first.text)]
    current = first
    while "next" in links(current.text):
        current = await browser.get(links(current.text)["next"])
        assert current.status_code == 200
        pages.append(rows(current.text))
    assert [event for shown in pages for event in shown] == everything
    assert [len(shown) for shown in pages] == [4, 4, 2]

    back = [rows(current.text)]
    while "prev" in links(current.text):
        current = await browser.get(links(current.text)["prev"])
        back.append(rows(current.text))
    assert back == list(reversed(pages))
    assert "next" in links(current.text)


async def test_the_type_filter_and_the_links_to_the_objects(
    browser: httpx.AsyncClient, client: httpx.AsyncClient, api_key: str
) -> None:
    credential = await create_credential(client, api_key=api_key, name="Contoso app")
    cid = credential["credential_id"]
    await bulk(client, api_key=api_key, emails=["jim@contoso.com", "pam@contoso.com"], credential_id=cid)
    everything = sorted(await api_ids(client, api_key), reverse=True)

    connected = await browser.get(PAGE, params={"type": "mailbox.connected"})
    assert connected.status_code == 200
    assert rows(connected.text) == everything[:2]
    jim = '<a href="/console/mailboxes?address=jim%40contoso.com">Mailbox jim@contoso.com</a>'
    assert jim in connected.text
    created = await browser.get(PAGE, params={"type": "credential.created"})
    assert rows(created.text) == everything[2:]
    assert f'<a href="/console/credentials/{cid}">Credential Contoso app</a>' in created.text
    assert rows((await browser.get(PAGE, params={"type": "credential.expired"})).text) == []

    for mailbox in (await client.get(MAILBOXES, headers=headers(api_key))).json()["content"]:
        await client.delete(f"{MAILBOXES}/{mailbox['id']}", headers=headers(api_key))
    deleted = await client.delete(f"{CREDENTIALS}/{cid}", headers=headers(api_key))
    assert deleted.status_code == 204, deleted.text
    gone = await browser.get(PAGE, params={"type": "credential.created"})
    assert "Credential Contoso app" in gone.text
    assert f'href="/console/credentials/{cid}"' not in gone.text  # its page no longer exists


@pytest.mark.parametrize(
    "query",
    [
        {"type": "webhook.test"},
        {"type": "mailbox.exploded"},
        {"before": "abc"},
        {"after": "0"},
        {"before": "99999999999999999999999"},
        {"before": "5", "after": "3"},
    ],
)
async def test_a_bad_filter_or_cursor_is_a_400_page_not_a_500(
    browser: httpx.AsyncClient, query: dict[str, str]
) -> None:
    answer = await browser.get(PAGE, params=query)
    assert answer.status_code == 400
    assert 'class="error form-error" role="alert"' in answer.text


async def test_one_account_never_sees_another_accounts_events(
    browser: httpx.AsyncClient, client: httpx.AsyncClient, api_key: str, other_api_key: str
) -> None:
    await create_credential(client, api_key=other_api_key, name="Globex app")
    theirs = await api_ids(client, other_api_key)
    assert theirs
    page = await browser.get(PAGE)
    assert rows(page.text) == []
    assert "Globex app" not in page.text
    for event_id in theirs:
        assert rows((await browser.get(PAGE, params={"before": str(event_id + 1)})).text) == []
        if event_id > 1:
            assert rows((await browser.get(PAGE, params={"after": str(event_id - 1)})).text) == []


async def test_the_events_page_needs_a_session(settings: Settings, state: AppState) -> None:
    app = create_app(settings, state=state)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://m365connect.test") as http:
        answer = await http.get(PAGE)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/console/sign-in"
