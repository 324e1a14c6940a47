"""The console's webhooks pages (over the real ASGI stack, both databases): the secret shown once and
never again, the service's 422s next to their field with explanations.py's text, CSRF on every form,
enable/disable/delete/test through webhooks.service, and one account never reaching another's
subscriptions. The delivery to a real receiver is the browser test's (test_browser_webhooks.py)."""

from __future__ import annotations

import asyncio
import html
import re
import ssl
from collections.abc import AsyncIterator

import httpx
import pytest

from m365connect.codes import ErrorCode
from m365connect.explanations import EXPLANATIONS
from m365connect.settings import Settings
from m365connect.state import AppState
from m365connect.webhooks import service
from tests.console.pages import sign_in, signed_in_csrf
from tests.factories import WEBHOOKS
from tests.helpers import headers
from tests.webhooks.support import FakeResolver, TransactionalEnqueue, api_over, with_webhooks

LIST = "/console/webhooks"
URL = "https://hooks.example.com/m365connect"
_SECRET = re.compile(r"whsec_[A-Za-z0-9+/=]+")
_FORM_KEY = re.compile(r'name="form_key" value="([^"]+)"')


@pytest.fixture
def resolver() -> FakeResolver:
    answers = FakeResolver()
    answers.set("hooks.example.com", ["93.184.215.14"])
    return answers


@pytest.fixture
def enqueue() -> TransactionalEnqueue:
    return TransactionalEnqueue()


@pytest.fixture
def strict_state(state: AppState, resolver: FakeResolver, enqueue: TransactionalEnqueue) -> AppState:
    """As an operator runs it: https to public addresses only (DNS is the fake's)."""
    return with_webhooks(
        state,
        resolver=resolver,
        enqueue=enqueue,
        allow_private=False,
        ssl_context=ssl.create_default_context(),
    )


@pytest.fixture
async def api(settings: Settings, strict_state: AppState) -> AsyncIterator[httpx.AsyncClient]:
    async with api_over(settings, strict_state) as http:
        yield http


@pytest.fixture
async def browser(
    settings: Settings, strict_state: AppState, api_key: str
) -> AsyncIterator[httpx.AsyncClient]:
    async with api_over(settings, strict_state) as http:
        assert (await sign_in(http, api_key)).status_code == 303
        yield http


async def listed(api: httpx.AsyncClient, api_key: str) -> list[dict[str, object]]:
    answer = await api.get(WEBHOOKS, headers=headers(api_key))
    assert answer.status_code == 200
    webhooks: list[dict[str, object]] = answer.json()["webhooks"]
    return webhooks


async def test_adding_shows_the_secret_once_after_the_redirect_and_a_reload_adds_nothing(
    browser: httpx.AsyncClient, api: httpx.AsyncClient, api_key: str
) -> None:
    token = await signed_in_csrf(browser)
    posted = await browser.post(
        LIST,
        data={
            "csrf_token": token,
            "url": URL,
            "event_types": ["mailbox.failing", "mailbox.recovered"],
            "description": "Ops alerts",
        },
    )
    [webhook] = await listed(api, api_key)
    # POST-redirect-GET: the answer to the POST is a redirect whose URL holds no secret.
    assert (posted.status_code, posted.headers["location"]) == (303, f"{LIST}/{webhook['id']}/added")
    assert "whsec_" not in posted.text
    added = await browser.get(posted.headers["location"])
    assert added.status_code == 200
    assert "no-store" in added.headers["cache-control"]
    secrets = _SECRET.findall(added.text)
    assert len(set(secrets)) == 1
    assert "Copy the signing secret now: it is shown only this once." in added.text
    assert webhook["event_types"] == ["mailbox.failing", "mailbox.recovered"]
    assert webhook["description"] == "Ops alerts"
    # Reloading the answer reloads the GET: no second subscription, and the secret is not shown again.
    reloaded = await browser.get(posted.headers["location"])
    assert reloaded.status_code == 200
    assert "was shown once already" in reloaded.text
    assert "whsec_" not in reloaded.text
    assert len(await listed(api, api_key)) == 1
    for later in (LIST, f"{LIST}/{webhook['id']}", f"{LIST}/{webhook['id']}/delete", "/console/events"):
        shown = await browser.get(later)
        assert shown.status_code == 200
        assert "whsec_" not in shown.text
        assert secrets[0] not in shown.text

    every = await browser.post(LIST, data={"csrf_token": token, "url": URL})
    assert every.status_code == 303
    assert [item["event_types"] for item in await listed(api, api_key)] == [
        ["mailbox.failing", "mailbox.recovered"],
        None,
    ]
    # Only the newest subscription added in this session can be revealed, once.
    second = await browser.get(every.headers["location"])
    assert len(set(_SECRET.findall(second.text))) == 1
    assert _SECRET.findall(second.text)[0] != secrets[0]
    assert "whsec_" not in (await browser.get(posted.headers["location"])).text


async def test_editing_a_subscription_goes_through_the_apis_update(
    browser: httpx.AsyncClient, api: httpx.AsyncClient, api_key: str
) -> None:
    token = await signed_in_csrf(browser)
    assert (await browser.post(LIST, data={"csrf_token": token, "url": URL})).status_code == 303
    [webhook] = await listed(api, api_key)
    page = f"{LIST}/{webhook['id']}"
    shown = await browser.get(page)
    assert f'id="edit-url" name="url" autocomplete="off" value="{URL}"' in shown.text

    edited = await browser.post(
        f"{page}/edit",
        data={
            "csrf_token": token,
            "url": "https://hooks.example.com/other",
            "event_types": ["mailbox.failing"],
            "description": "Ops",
        },
    )
    assert (edited.status_code, edited.headers["location"]) == (303, f"{page}?done=edited")
    [changed] = await listed(api, api_key)
    assert (changed["url"], changed["event_types"], changed["description"], changed["enabled"]) == (
        "https://hooks.example.com/other",
        ["mailbox.failing"],
        "Ops",
        True,
    )
    assert "The subscription was changed." in (await browser.get(edited.headers["location"])).text

    # The service's refusals next to their field, what was typed kept, nothing changed.
    refused = await browser.post(f"{page}/edit", data={"csrf_token": token, "url": "https://127.0.0.1/x"})
    assert refused.status_code == 422
    assert 'id="edit-url-error"' in refused.text
    assert f"INVALID_WEBHOOK_URL: {EXPLANATIONS[ErrorCode.INVALID_WEBHOOK_URL].meaning}" in html.unescape(
        refused.text
    )
    assert 'value="https://127.0.0.1/x"' in refused.text
    unknown = await browser.post(
        f"{page}/edit", data={"csrf_token": token, "url": URL, "event_types": "mailbox.exploded"}
    )
    assert unknown.status_code == 422
    assert 'id="edit-event_types-error"' in unknown.text
    blank = await browser.post(f"{page}/edit", data={"csrf_token": token, "url": ""})
    assert blank.status_code == 400
    assert 'id="edit-url-error"' in blank.text
    assert await listed(api, api_key) == [changed]

    # None ticked and no description: every type, no description (null, as the API's PATCH takes them).
    cleared = await browser.post(f"{page}/edit", data={"csrf_token": token, "url": URL})
    assert cleared.status_code == 303
    [after] = await listed(api, api_key)
    assert (after["url"], after["event_types"], after["description"]) == (URL, None, None)
    assert (
        await browser.post(f"{page}/edit", data={"url": "https://hooks.example.com/x"})
    ).status_code == 403
    assert await listed(api, api_key) == [after]


async def test_the_services_refusals_are_shown_next_to_their_field_explained(
    browser: httpx.AsyncClient, api: httpx.AsyncClient, api_key: str
) -> None:
    token = await signed_in_csrf(browser)
    plain = await browser.post(LIST, data={"csrf_token": token, "url": "http://hooks.example.com/x"})
    assert plain.status_code == 422
    text = html.unescape(plain.text)
    assert 'id="add-url-error"' in plain.text
    assert f"INVALID_WEBHOOK_URL: {EXPLANATIONS[ErrorCode.INVALID_WEBHOOK_URL].meaning}" in text
    assert 'value="http://hooks.example.com/x"' in plain.text  # what was typed is kept

    private = await browser.post(LIST, data={"csrf_token": token, "url": "https://127.0.0.1/x"})
    assert private.status_code == 422
    assert 'id="add-url-error"' in private.text

    unknown = await browser.post(
        LIST, data={"csrf_token": token, "url": URL, "event_types": "mailbox.exploded"}
    )
    assert unknown.status_code == 422
    assert 'id="add-event_types-error"' in unknown.text
    assert EXPLANATIONS[ErrorCode.UNKNOWN_EVENT_TYPE].meaning in html.unescape(unknown.text)

    missing = await browser.post(LIST, data={"csrf_token": token, "url": ""})
    assert missing.status_code == 400
    assert 'id="add-url-error"' in missing.text
    assert await listed(api, api_key) == []

    for _ in range(service.MAX_WEBHOOKS_PER_ACCOUNT):
        assert (await api.post(WEBHOOKS, json={"url": URL}, headers=headers(api_key))).status_code == 201
    full = await browser.post(LIST, data={"csrf_token": token, "url": URL})
    assert full.status_code == 422
    assert 'class="error form-error" role="alert">TOO_MANY_WEBHOOKS' in full.text
    assert "whsec_" not in full.text
    assert len(await listed(api, api_key)) == service.MAX_WEBHOOKS_PER_ACCOUNT


async def test_enable_disable_test_and_delete_go_through_the_service(
    browser: httpx.AsyncClient, api: httpx.AsyncClient, api_key: str, enqueue: TransactionalEnqueue
) -> None:
    token = await signed_in_csrf(browser)
    assert (await browser.post(LIST, data={"csrf_token": token, "url": URL})).status_code == 303
    [webhook] = await listed(api, api_key)
    wid = webhook["id"]

    disabled = await browser.post(f"{LIST}/{wid}/disable", data={"csrf_token": token})
    assert (disabled.status_code, disabled.headers["location"]) == (303, f"{LIST}?done=disabled")
    assert [item["enabled"] for item in await listed(api, api_key)] == [False]
    enabled = await browser.post(f"{LIST}/{wid}/enable", data={"csrf_token": token})
    assert enabled.headers["location"] == f"{LIST}?done=enabled"
    assert [item["enabled"] for item in await listed(api, api_key)] == [True]

    tested = await browser.post(f"{LIST}/{wid}/test", data={"csrf_token": token})
    assert tested.status_code == 303
    event_id = int(tested.headers["location"].split("queued=")[1])
    assert [(job.kind, job.payload) for job in enqueue.jobs] == [
        (service.DELIVER_KIND, {"subscription_id": wid, "event_id": event_id})
    ]
    shown = await browser.get(tested.headers["location"])
    assert f"Test event {event_id} was queued" in shown.text

    confirm = await browser.get(f"{LIST}/{wid}/delete")
    assert confirm.status_code == 200
    deleted = await browser.post(f"{LIST}/{wid}/delete", data={"csrf_token": token})
    assert deleted.headers["location"] == f"{LIST}?done=deleted"
    assert await listed(api, api_key) == []


async def test_every_form_needs_the_csrf_token(
    browser: httpx.AsyncClient, api: httpx.AsyncClient, api_key: str, enqueue: TransactionalEnqueue
) -> None:
    token = await signed_in_csrf(browser)
    refused = await browser.post(LIST, data={"url": URL})
    assert refused.status_code == 403
    assert await listed(api, api_key) == []
    assert (await browser.post(LIST, data={"csrf_token": token, "url": URL})).status_code == 303
    [webhook] = await listed(api, api_key)
    for action in ("disable", "test", "delete", "edit"):
        for wrong in ({}, {"csrf_token": "x" * len(token)}):
            answer = await browser.post(f"{LIST}/{webhook['id']}/{action}", data=wrong)
            assert answer.status_code == 403, action
    assert await listed(api, api_key) == [webhook]
    assert enqueue.jobs == []


async def test_one_account_never_reaches_another_accounts_subscriptions(
    browser: httpx.AsyncClient, api: httpx.AsyncClient, api_key: str, other_api_key: str
) -> None:
    theirs = await api.post(
        WEBHOOKS, json={"url": URL, "description": "Globex"}, headers=headers(other_api_key)
    )
    assert theirs.status_code == 201
    wid = theirs.json()["id"]
    token = await signed_in_csrf(browser)
    assert "Globex" not in (await browser.get(LIST)).text
    assert (await browser.get(f"{LIST}/{wid}")).status_code == 404
    assert (await browser.get(f"{LIST}/{wid}/delete")).status_code == 404
    assert (await browser.get(f"{LIST}/{wid}/added")).status_code == 404
    for action in ("disable", "test", "delete", "edit"):
        assert (await browser.post(f"{LIST}/{wid}/{action}", data={"csrf_token": token})).status_code == 404
    [still] = await listed(api, other_api_key)
    assert still["enabled"] is True
    assert (await browser.get(f"{LIST}/abc")).status_code == 404
    assert (await browser.get(f"{LIST}/99999999999999999999")).status_code == 404


async def test_the_add_form_posted_twice_at_once_adds_one_subscription(
    browser: httpx.AsyncClient, api: httpx.AsyncClient, api_key: str
) -> None:
    shown = await browser.get(LIST)
    key = _FORM_KEY.search(shown.text)
    assert key is not None
    form = {"csrf_token": await signed_in_csrf(browser), "url": URL, "form_key": key.group(1)}
    # A double click: the same form, twice, at once; the browser shows the answer to the second.
    first, second = await asyncio.gather(browser.post(LIST, data=form), browser.post(LIST, data=form))
    [webhook] = await listed(api, api_key)
    added = f"{LIST}/{webhook['id']}/added"
    assert [(r.status_code, r.headers["location"]) for r in (first, second)] == [(303, added), (303, added)]
    answer = await browser.get(second.headers["location"])
    assert len(set(_SECRET.findall(answer.text))) == 1  # the first answer was never shown: this one is
    # The form went back to and edited: another subscription, not the first one's answer.
    edited = await browser.post(LIST, data=form | {"url": URL + "/other"})
    assert edited.status_code == 303
    assert edited.headers["location"] != added
    assert sorted(str(item["url"]) for item in await listed(api, api_key)) == [URL, URL + "/other"]
    # Each rendering of the page carries a new key.
    again = _FORM_KEY.search((await browser.get(LIST)).text)
    assert again is not None
    assert again.group(1) != key.group(1)
