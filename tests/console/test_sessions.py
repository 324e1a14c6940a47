"""Console sign-in over the real ASGI stack on both databases: sessions, cookies, CSRF, expiry, the failure
budget, and the API key kept out of pages, URLs and logs."""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta

import httpx
import pytest
import redis.asyncio as aioredis

from m365connect.accounts.service import authenticate_key, revoke_api_key
from m365connect.api.ratelimit import FAILURES_REDIS_PREFIX
from m365connect.app import create_app
from m365connect.console import service
from m365connect.console.service import SessionPolicy
from m365connect.console.web import SESSION_COOKIE
from m365connect.db.base import utcnow
from m365connect.settings import Settings
from m365connect.state import AppState, open_state
from tests.console.pages import SIGN_IN, csrf_of, sign_in, signed_in_csrf
from tests.factories import MAILBOXES, bulk, create_credential
from tests.processes import free_port
from tests.redis_support import PATIENT_SECONDS, REDIS_URL

CREDENTIALS_PAGE = "/console/credentials"
CREDENTIALS_API = "/rest/v2/mailboxes/microsoft/credentials"


@pytest.fixture
async def browser(settings: Settings, state: AppState) -> AsyncIterator[httpx.AsyncClient]:
    """A cookie-keeping client on the app, as a browser over plain http."""
    app = create_app(settings, state=state)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://m365connect.test") as http:
        yield http


async def test_a_wrong_key_is_refused_and_the_right_one_signs_in(
    browser: httpx.AsyncClient, api_key: str
) -> None:
    refused = await sign_in(browser, api_key[:-2] + "xx")
    assert refused.status_code == 401
    assert "was not accepted" in refused.text
    assert SESSION_COOKIE not in browser.cookies
    assert (await browser.get(CREDENTIALS_PAGE)).headers["location"] == SIGN_IN

    accepted = await sign_in(browser, api_key)
    assert accepted.status_code == 303
    assert accepted.headers["location"] == CREDENTIALS_PAGE
    page = await browser.get(CREDENTIALS_PAGE)
    assert page.status_code == 200
    assert "Your credentials" in page.text


async def test_the_session_cookie_is_httponly_strict_and_secure_over_https(
    settings: Settings, state: AppState, api_key: str
) -> None:
    app = create_app(settings, state=state)
    for base_url, secure in (("http://m365connect.test", False), ("https://m365connect.test", True)):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=base_url) as http:
            answer = await sign_in(http, api_key)
        cookie = next(v for v in answer.headers.get_list("set-cookie") if v.startswith(f"{SESSION_COOKIE}="))
        attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]}
        assert {"httponly", "samesite", "path", "max-age"} <= attributes
        assert "samesite=strict" in cookie.lower()
        assert "path=/console" in cookie.lower()
        assert ("secure" in attributes) is secure


async def test_forms_without_the_csrf_token_are_refused_with_403(
    browser: httpx.AsyncClient, client: httpx.AsyncClient, api_key: str
) -> None:
    credential = await create_credential(client, api_key=api_key)
    connected = await bulk(
        client, api_key=api_key, emails=["jim@contoso.com"], credential_id=credential["credential_id"]
    )
    mailbox_id = connected.json()[0]["id"]
    await sign_in(browser, api_key)
    token = await signed_in_csrf(browser)
    cid = credential["credential_id"]
    forms = {
        CREDENTIALS_PAGE: {"tenant_id": "x", "client_id": "y", "client_secret": "z"},
        f"{CREDENTIALS_PAGE}/{cid}/rename": {"name": "renamed"},
        f"{CREDENTIALS_PAGE}/{cid}/rotate": {"client_secret": "s", "secret_expires_at": "2031-01-01"},
        f"{CREDENTIALS_PAGE}/{cid}/delete": {"confirm": "yes"},
        f"/console/mailboxes/{mailbox_id}/disconnect": {},
        "/console/sign-out": {},
        SIGN_IN: {"api_key": api_key},
    }
    for path, fields in forms.items():
        for presented in (None, "", token[:-1] + ("A" if token[-1] != "A" else "B")):
            data = fields if presented is None else {**fields, "csrf_token": presented}
            answer = await browser.post(path, data=data)
            assert answer.status_code == 403, (path, presented, answer.text[:300])
            assert "Nothing was changed" in answer.text
    # Nothing changed, and the session is still on.
    mailbox = await client.get(f"{MAILBOXES}/{mailbox_id}", headers={"x-api-key": api_key})
    assert mailbox.json()["status"] == "ACTIVE"
    listed = await browser.get(CREDENTIALS_PAGE)
    assert listed.status_code == 200
    assert "MS Graph app" in listed.text
    assert "renamed" not in listed.text
    # With the token, the same form works: the refusals above were the token's doing.
    done = await browser.post(
        f"{CREDENTIALS_PAGE}/{cid}/rename", data={"name": "renamed", "csrf_token": token}
    )
    assert done.status_code == 303


async def test_sign_out_ends_the_session_on_the_server(browser: httpx.AsyncClient, api_key: str) -> None:
    await sign_in(browser, api_key)
    stolen = browser.cookies[SESSION_COOKIE]
    token = await signed_in_csrf(browser)
    out = await browser.post("/console/sign-out", data={"csrf_token": token})
    assert out.status_code == 303
    assert SESSION_COOKIE not in browser.cookies
    browser.cookies.set(SESSION_COOKIE, stolen, domain="m365connect.test", path="/console")
    replay = await browser.get(CREDENTIALS_PAGE)
    assert replay.status_code == 303
    assert replay.headers["location"] == SIGN_IN


async def test_revoking_the_key_ends_its_sessions(
    browser: httpx.AsyncClient, state: AppState, api_key: str
) -> None:
    await sign_in(browser, api_key)
    assert (await browser.get(CREDENTIALS_PAGE)).status_code == 200
    async with state.sessions() as session:
        key = await authenticate_key(session, presented=api_key)
        assert key is not None
        assert await revoke_api_key(session, key_id=key.key_id)
        await session.commit()
    answer = await browser.get(CREDENTIALS_PAGE)
    assert answer.status_code == 303
    assert answer.headers["location"] == SIGN_IN


async def test_sessions_end_after_idle_time_and_at_their_absolute_expiry(
    state: AppState, api_key: str
) -> None:
    policy = SessionPolicy(idle=timedelta(minutes=30), absolute=timedelta(hours=2))
    start = utcnow()
    async with state.sessions() as session:
        key = await authenticate_key(session, presented=api_key)
        assert key is not None
        idle_token = await service.open_session(session, key=key, policy=policy, now=start)
        busy_token = await service.open_session(session, key=key, policy=policy, now=start)
        await session.commit()
    async with state.sessions() as session:
        # Active every 20 minutes: alive past the idle time, until the absolute expiry.
        moment = start
        while moment + timedelta(minutes=20) < start + policy.absolute:
            moment += timedelta(minutes=20)
            assert await service.resume(session, token=busy_token, policy=policy, now=moment) is not None
        assert (
            await service.resume(session, token=busy_token, policy=policy, now=start + policy.absolute)
            is None
        )
        # Untouched for 30 minutes less a second: still alive (looked at in a transaction rolled back, so
        # that the look does not count as activity).
        almost = start + policy.idle - timedelta(seconds=1)
        assert await service.resume(session, token=idle_token, policy=policy, now=almost) is not None
        await session.rollback()
    async with state.sessions() as session:
        assert await service.resume(session, token=idle_token, policy=policy, now=start + policy.idle) is None
        assert await service.resume(session, token=idle_token, policy=policy, now=start) is None  # deleted
        await session.commit()


async def test_failed_sign_ins_spend_the_address_budget(
    settings: Settings, state: AppState, api_key: str
) -> None:
    tight = settings.model_copy(update={"auth_failures_burst": 3, "auth_failures_per_minute": 1})
    async with open_state(tight) as built:
        await _past_the_budget(tight, built, api_key)


async def _past_the_budget(tight: Settings, state: AppState, api_key: str) -> None:
    app = create_app(tight, state=state)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://m365connect.test") as http:
        for _ in range(3):
            assert (await sign_in(http, "m365c_" + "0" * 40)).status_code == 401
        limited = await sign_in(http, api_key)  # even the right key: the address is out of budget
        assert limited.status_code == 429
        assert int(limited.headers["retry-after"]) >= 1
        assert SESSION_COOKIE not in http.cookies
        # The API's gate shares the budget: the address's API requests are refused too.
        api = await http.get("/rest/v2/mailboxes/microsoft/credentials", headers={"x-api-key": api_key})
        assert api.status_code == 429


async def test_the_key_is_in_no_page_url_or_log(
    browser: httpx.AsyncClient, api_key: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    seen: list[httpx.Response] = [await sign_in(browser, api_key + "x"), await sign_in(browser, api_key)]
    for path in (CREDENTIALS_PAGE, "/console/mailboxes", SIGN_IN):
        seen.append(await browser.get(path))
    for answer in seen:
        assert api_key not in answer.text
        assert api_key not in str(answer.request.url)
        assert api_key not in str(answer.headers)
    assert api_key not in caplog.text
    assert any(record.getMessage() == "http.request" for record in caplog.records)


async def test_the_console_sees_only_its_own_account(
    browser: httpx.AsyncClient, client: httpx.AsyncClient, api_key: str, other_api_key: str
) -> None:
    theirs = await create_credential(client, api_key=other_api_key, name="Globex app")
    await sign_in(browser, api_key)
    listed = await browser.get(CREDENTIALS_PAGE)
    assert "Globex app" not in listed.text
    for path in (
        f"{CREDENTIALS_PAGE}/{theirs['credential_id']}",
        f"{CREDENTIALS_PAGE}/0",
        f"{CREDENTIALS_PAGE}/abc",
    ):
        answer = await browser.get(path)
        assert answer.status_code == 404
        assert "Globex app" not in answer.text
    token = csrf_of(listed.text)
    refused = await browser.post(
        f"{CREDENTIALS_PAGE}/{theirs['credential_id']}/delete", data={"csrf_token": token, "confirm": "yes"}
    )
    assert refused.status_code == 404
    still = await client.get("/rest/v2/mailboxes/microsoft/credentials", headers={"x-api-key": other_api_key})
    assert [c["name"] for c in still.json()["credentials"]] == ["Globex app"]


@asynccontextmanager
async def _replicas(settings: Settings, address: str) -> AsyncIterator[list[httpx.AsyncClient]]:
    """Two apps with states of their own (two replicas), seen from one client address."""
    async with AsyncExitStack() as stack:
        clients = []
        for _ in range(2):
            built = await stack.enter_async_context(open_state(settings))
            transport = httpx.ASGITransport(app=create_app(settings, state=built), client=(address, 50000))
            http = httpx.AsyncClient(transport=transport, base_url="http://m365connect.test")
            clients.append(await stack.enter_async_context(http))
        yield clients


async def test_replicas_sharing_redis_share_one_failure_budget(settings: Settings, api_key: str) -> None:
    shared = settings.model_copy(
        update={
            "redis_url": REDIS_URL,
            "redis_timeout_seconds": PATIENT_SECONDS,  # a loaded machine stalled past the half second
            "auth_failures_burst": 3,
            "auth_failures_per_minute": 1,
        }
    )
    address = f"2001:db8::{secrets.token_hex(2)}:{secrets.token_hex(2)}"  # this test's own bucket
    redis = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        async with _replicas(shared, address) as (first, second):
            wrong = "m365c_" + "0" * 40
            assert (await sign_in(first, wrong)).status_code == 401
            assert (await second.get(CREDENTIALS_API, headers={"x-api-key": wrong})).status_code == 401
            assert (await sign_in(second, wrong)).status_code == 401
            # Three failures in all, spread over both replicas: each one is now out of budget.
            assert (await sign_in(first, api_key)).status_code == 429
            assert (await second.get(CREDENTIALS_API, headers={"x-api-key": api_key})).status_code == 429
        assert 0 < await redis.pttl(f"{FAILURES_REDIS_PREFIX}{address}") <= 181_000
    finally:
        await redis.delete(f"{FAILURES_REDIS_PREFIX}{address}")
        await redis.aclose()


async def test_the_failure_budget_fails_open_when_redis_is_unreachable(
    settings: Settings, api_key: str, caplog: pytest.LogCaptureFixture
) -> None:
    dead = settings.model_copy(
        update={
            "redis_url": f"redis://127.0.0.1:{free_port()}/0",
            "auth_failures_burst": 1,
            "auth_failures_per_minute": 1,
        }
    )
    caplog.set_level(logging.WARNING, logger="m365connect.api.ratelimit")
    async with _replicas(dead, "203.0.113.9") as (http, _):
        for _ in range(3):
            assert (await sign_in(http, "m365c_" + "0" * 40)).status_code == 401
        assert (await sign_in(http, api_key)).status_code == 303
    assert [r.getMessage() for r in caplog.records].count("ratelimit.redis.unavailable") == 1
