"""The API key is checked at the ASGI edge: a refused request's body is never read (issue 9, item 4)."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import event

from m365connect.api.deps import CurrentAccount
from m365connect.api.ratelimit import MemoryRateLimiter, Policy
from m365connect.app import create_app
from m365connect.crypto import generate_key
from m365connect.settings import Settings
from m365connect.simulator import FakeMicrosoft
from m365connect.state import AppState, open_state
from tests.factories import BULK, CREDENTIALS, credential_body
from tests.helpers import assert_generic_error, headers
from tests.processes import Children
from tests.served import new_api_key, serve, service_env

TWO_MIB = (
    b'{"accounts": [' + b'{"mailbox_email": "a@b.com"},' * (2 * 1024 * 1024 // 29 - 10) + b"{}]}"
)  # just under the limit
RATE_HEADERS = ("ratelimit-limit", "ratelimit-remaining", "ratelimit-reset")


def bogus_of(api_key: str) -> str:
    """A key of our shape with a real key's lookup prefix but a wrong secret: it reaches the database."""
    scheme, prefix, secret = api_key.split("_", 2)
    return f"{scheme}_{prefix}_{'x' * len(secret)}"


class Counted:
    """An ASGI app that counts the request body bytes the service pulled through receive()."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.pulled = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def counting_receive() -> Any:
            message = await receive()
            self.pulled += len(message.get("body", b""))
            return message

        await self.app(scope, counting_receive, send)


class Queries:
    """SELECTs on api_keys run by an engine (a listener on the real engine, nothing replaced)."""

    def __init__(self, state: AppState) -> None:
        self.count = 0
        event.listen(state.engine.sync_engine, "before_cursor_execute", self._seen)

    def _seen(self, *args: Any) -> None:
        statement = str(args[2]).lower()
        if statement.startswith("select") and "api_keys" in statement:
            self.count += 1


@asynccontextmanager
async def _client(
    app: Any, *, address: str = "127.0.0.1", base_url: str = "http://m365connect.test"
) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=(address, 50000))
    async with httpx.AsyncClient(transport=transport, base_url=base_url) as http:
        yield http


async def test_a_bogus_key_is_refused_before_a_byte_of_the_body_is_read(
    settings: Settings, state: AppState, api_key: str
) -> None:
    counted = Counted(create_app(settings, state=state))
    async with _client(counted) as http:
        for presented in (bogus_of(api_key), "m365c_nope", None):
            sent = {"content-type": "application/json", **({"x-api-key": presented} if presented else {})}
            refused = await http.post(BULK, content=TWO_MIB, headers=sent)
            assert_generic_error(refused, status=401, title="Unauthorized", detail="Invalid api key")
            assert refused.headers["connection"] == "close"
            assert refused.headers["x-request-id"]
            assert not any(name in refused.headers for name in RATE_HEADERS)
        assert counted.pulled == 0

        # The legitimate path reads its body, and still carries the rate-limit headers.
        created = await http.post(CREDENTIALS, json=credential_body(), headers=headers(api_key))
        assert created.status_code == 201, created.text
        assert counted.pulled > 0
        assert all(name in created.headers for name in RATE_HEADERS)
        assert "connection" not in created.headers


async def test_bogus_keys_cost_one_lookup_and_malformed_ones_none(
    settings: Settings, state: AppState, api_key: str
) -> None:
    queries = Queries(state)
    async with _client(create_app(settings, state=state)) as http:
        for presented in ("m365c_short_x", "m365c_aaaaaaaaaaaa_" + "!" * 43, api_key.upper()):
            assert (await http.get(CREDENTIALS, headers=headers(presented))).status_code == 401
        assert queries.count == 0  # not our shape: refused without the database
        for _ in range(3):
            assert (await http.get(CREDENTIALS, headers=headers(bogus_of(api_key)))).status_code == 401
        assert queries.count == 1  # refusals are remembered
        for _ in range(2):
            assert (await http.get(CREDENTIALS, headers=headers(api_key))).status_code == 200
        assert queries.count == 3  # acceptances are not: a revoked key is refused from its next request


async def test_an_address_past_its_failure_budget_is_answered_429_without_a_lookup(
    settings: Settings, state: AppState, api_key: str
) -> None:
    limited = settings.model_copy(update={"auth_failures_burst": 3, "auth_failures_per_minute": 1})
    async with open_state(limited) as tight:
        await _past_the_budget(limited, tight, api_key)


async def _past_the_budget(limited: Settings, state: AppState, api_key: str) -> None:
    app = create_app(limited, state=state)
    queries = Queries(state)
    async with _client(app, address="203.0.113.7") as guesser, _client(app, address="203.0.113.8") as other:
        for number in range(3):
            wrong = f"m365c_{'a' * 11}{number}_{'b' * 43}"
            assert (await guesser.get(CREDENTIALS, headers=headers(wrong))).status_code == 401
        assert queries.count == 3
        for presented in (f"m365c_{'c' * 12}_{'d' * 43}", api_key):
            refused = await guesser.post(BULK, content=TWO_MIB, headers=headers(presented))
            assert_generic_error(refused, status=429, title="Too Many Requests")
            assert int(refused.headers["retry-after"]) >= 1
            assert refused.headers["connection"] == "close"
        assert queries.count == 3
        served = await other.get(CREDENTIALS, headers=headers(api_key))
        assert served.status_code == 200  # the budget is per client address


async def test_a_rate_limited_key_is_refused_before_its_body_is_read(
    settings: Settings, api_key: str
) -> None:
    limited = settings.model_copy(update={"rate_limit_burst": 1, "rate_limit_per_minute": 1})
    async with open_state(limited) as state:  # the per-key limiter is built with the state
        counted = Counted(create_app(limited, state=state))
        async with _client(counted) as http:
            assert (await http.get(CREDENTIALS, headers=headers(api_key))).status_code == 200
            refused = await http.post(BULK, content=TWO_MIB, headers=headers(api_key))
            assert_generic_error(refused, status=429, title="Too Many Requests")
            assert refused.headers["ratelimit-remaining"] == "0"
            assert counted.pulled == 0


async def test_a_route_not_given_to_the_gate_fails_closed(
    settings: Settings, state: AppState, api_key: str
) -> None:
    app = create_app(settings, state=state)

    async def whoami(account_id: CurrentAccount) -> dict[str, int]:
        return {"account_id": account_id}

    app.add_api_route("/rest/v2/whoami", whoami)  # added outside the API routers: the gate never saw it
    async with _client(app) as http:
        refused = await http.get("/rest/v2/whoami", headers=headers(api_key))
        assert_generic_error(refused, status=401, title="Unauthorized", detail="Invalid api key")


async def test_unknown_paths_and_probes_need_no_key(settings: Settings, state: AppState) -> None:
    async with _client(create_app(settings, state=state)) as http:
        assert (await http.get("/healthz")).status_code == 200
        assert (await http.get("/openapi.json")).status_code == 200
        assert_generic_error(await http.get("/rest/v2/nothing"), status=404, title="Not Found")


async def test_the_failure_budgets_of_many_addresses_stay_bounded_in_memory() -> None:
    now = [1000.0]
    failures = MemoryRateLimiter(Policy(per_minute=1, burst=5), clock=lambda: now[0], max_buckets=100)
    for round_ in range(5):  # several rounds of 1,000 addresses that each failed once (none refills)
        for number in range(1000):
            assert (await failures.take(f"2001:db8::{round_}:{number}")).allowed
            assert len(failures) <= 100
        now[0] += 1.0
    spent = f"2001:db8::4:{999}"
    assert failures.peek(spent).remaining == 4  # the newest addresses are still remembered


def _answer_until_closed(sock: socket.socket) -> bytes:
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


async def test_serve_answers_a_bogus_key_before_the_client_sent_its_body(
    database_url: str, microsoft: FakeMicrosoft, tmp_path: Path, children: Children
) -> None:
    api_key = await new_api_key(database_url, account="edge")
    env = service_env(database_url=database_url, keys=generate_key(), microsoft=microsoft)
    url, _ = serve(children, env=env, workdir=tmp_path, name="edge")
    port = int(url.rsplit(":", 1)[1])
    head = (
        f"POST {BULK} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
        f"content-length: {len(TWO_MIB)}\r\nx-api-key: {bogus_of(api_key)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head + TWO_MIB[:1000])  # the server must not wait for the remaining 2 MiB
        answer = _answer_until_closed(sock)
    status_and_headers, _, body = answer.partition(b"\r\n\r\n")
    assert status_and_headers.startswith(b"HTTP/1.1 401 "), answer[:200]
    assert b"\r\nconnection: close" in status_and_headers.lower()
    assert json.loads(body)["detail"] == "Invalid api key"
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        served = await http.get(CREDENTIALS, headers=headers(api_key))
        assert served.status_code == 200
        assert served.headers["ratelimit-limit"] == "100000"
