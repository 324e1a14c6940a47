"""GraphClient against an in-process fake Graph (httpx.MockTransport): batching, retries, tokens."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from m365connect.microsoft.graph import GraphAuthenticationError, GraphClient, GraphRequest, Outcome

Item = tuple[int, dict[str, str], Any]
Answer = Callable[[], httpx.Response]
MISSING: Item = (-1, {}, None)  # the fake leaves this item out of the batch response
FAR = 1e9


def error(status: int, code: str = "SomeCode", headers: dict[str, str] | None = None) -> Item:
    return (status, headers or {}, {"error": {"code": code, "message": "..."}})


def throttled(retry_after: str | None = None) -> Item:
    return error(429, "TooManyRequests", {"Retry-After": retry_after} if retry_after else {})


def answer(status: int, **kwargs: Any) -> Answer:
    return lambda: httpx.Response(status, **kwargs)


def fail(exc: type[httpx.RequestError]) -> Answer:
    def raise_it() -> httpx.Response:
        raise exc("simulated")

    return raise_it


class FakeGraph:
    """`$batch` and single requests; item answers scripted per url, then 200 echoing the url."""

    def __init__(self) -> None:
        self.http: list[Answer] = []  # answers to the next HTTP requests, before any processing
        self.items: dict[str, list[Item]] = {}
        self.valid_tokens = {"token-1"}
        self.paths: list[str] = []
        self.batches: list[list[str]] = []
        self.bearers: list[str] = []
        self.in_flight = self.max_in_flight = 0

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            for _ in range(5):
                await asyncio.sleep(0)  # let the other envelopes in
            return self._answer(request)
        finally:
            self.in_flight -= 1

    def _answer(self, request: httpx.Request) -> httpx.Response:
        assert request.headers["client-request-id"]
        path = request.url.raw_path.decode()
        self.paths.append(path)
        assert len(self.paths) < 500, "runaway client"
        self.bearers.append(request.headers["Authorization"].removeprefix("Bearer "))
        if path == "/v1.0/$batch":
            sent = json.loads(request.content)["requests"]
            assert 1 <= len(sent) <= 20
            self.batches.append([item["url"] for item in sent])
        if self.http:
            return self.http.pop(0)()
        if self.bearers[-1] not in self.valid_tokens:
            return httpx.Response(401, json=error(401, "InvalidAuthenticationToken")[2])
        if path != "/v1.0/$batch":
            status, headers, body = self._next(path.removeprefix("/v1.0"))
            return httpx.Response(status, headers=headers, json=body)
        answers = [(item["id"], self._next(item["url"])) for item in reversed(sent)]  # Graph reorders
        responses = [{"id": i, "status": s, "headers": h, "body": b} for i, (s, h, b) in answers if s > 0]
        return httpx.Response(200, json={"responses": responses})

    def _next(self, url: str) -> Item:
        queue = self.items.get(url)
        return queue.pop(0) if queue else (200, {}, {"url": url})


class Clock:
    """Monotonic clock that only moves when the client sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class Tokens:
    """A token provider handing out `values` in turn and recording force_refresh."""

    def __init__(self, *values: str) -> None:
        self.values = values
        self.calls: list[bool] = []

    async def __call__(self, force_refresh: bool) -> str:
        self.calls.append(force_refresh)
        return self.values[min(len(self.calls), len(self.values)) - 1]


@pytest.fixture
def fake() -> FakeGraph:
    return FakeGraph()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def http(fake: FakeGraph) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.MockTransport(fake)) as client:
        yield client


@pytest.fixture
def make(http: httpx.AsyncClient, clock: Clock) -> Callable[..., GraphClient]:
    def build(**options: Any) -> GraphClient:
        return GraphClient(
            http=http, graph_url="https://graph.test/", sleep=clock.sleep, clock=clock, **options
        )

    return build


def gets(n: int) -> list[GraphRequest]:
    return [GraphRequest(id=f"r{i}", method="GET", url=f"/things/{i}") for i in range(n)]


async def test_batch_chunks_into_envelopes_of_20_and_keeps_input_order(fake, make) -> None:
    responses = await make().batch(Tokens("token-1"), gets(45), deadline=FAR)
    assert [len(batch) for batch in fake.batches] == [20, 20, 5]
    assert fake.paths == ["/v1.0/$batch"] * 3
    # the fake answers each envelope in reverse order
    assert [(r.id, r.status, r.body) for r in responses] == [
        (f"r{i}", 200, {"url": f"/things/{i}"}) for i in range(45)
    ]


async def test_batch_bounds_envelopes_in_flight(fake, make) -> None:
    responses = await make(max_batches_in_flight=3).batch(Tokens("token-1"), gets(200), deadline=FAR)
    assert len(fake.batches) == 10
    assert fake.max_in_flight == 3
    assert all(r.status == 200 for r in responses)


async def test_empty_batch_sends_nothing(fake, make) -> None:
    tokens = Tokens("token-1")
    assert await make().batch(tokens, [], deadline=FAR) == []
    assert fake.paths == []
    assert tokens.calls == []


async def test_item_429_resends_only_throttled_items_after_largest_retry_after(fake, make, clock) -> None:
    fake.items["/things/3"] = [throttled("0.2")]
    fake.items["/things/22"] = [throttled("1.5")]
    responses = await make().batch(Tokens("token-1"), gets(25), deadline=FAR)
    assert clock.sleeps == [1.5]
    assert sorted(fake.batches[2]) == ["/things/22", "/things/3"]  # re-batched together
    assert len(fake.batches) == 3
    assert all(r.status == 200 for r in responses)


async def test_429_without_retry_after_backs_off_exponentially_with_jitter(fake, make, clock) -> None:
    fake.items["/things/0"] = [throttled()] * 3
    [response] = await make().batch(Tokens("token-1"), gets(1), deadline=FAR)
    assert response.status == 200
    assert len(clock.sleeps) == 3
    for attempt, wait in enumerate(clock.sleeps):
        assert 2**attempt * 0.5 <= wait <= 2**attempt


async def test_retry_after_is_capped(fake, make, clock) -> None:
    fake.items["/things/0"] = [throttled("120")]
    await make(max_retry_after=30.0).batch(Tokens("token-1"), gets(1), deadline=FAR)
    assert clock.sleeps == [30.0]


async def test_envelope_429_retries_every_item_after_its_retry_after(fake, make, clock) -> None:
    fake.http = [answer(429, headers={"Retry-After": "0.7"})]
    responses = await make().batch(Tokens("token-1"), gets(3), deadline=FAR)
    assert clock.sleeps == [0.7]
    assert [r.status for r in responses] == [200, 200, 200]


@pytest.mark.parametrize(("deadline", "sleeps"), [(1.0, []), (5.0, [2.0, 2.0])])
async def test_deadline_stops_retries_and_ends_throttled(fake, make, clock, deadline, sleeps) -> None:
    fake.items["/things/0"] = [throttled("2")] * 10
    [response] = await make().batch(Tokens("token-1"), gets(1), deadline=deadline)
    assert clock.sleeps == sleeps
    assert len(fake.batches) == len(sleeps) + 1
    assert (response.status, response.outcome) == (429, Outcome.THROTTLED)


async def test_max_attempts_bounds_retries(fake, make, clock) -> None:
    fake.items["/things/0"] = [throttled("0.1")] * 10
    [response] = await make(max_attempts=3).batch(Tokens("token-1"), gets(1), deadline=FAR)
    assert len(fake.batches) == 3
    assert len(clock.sleeps) == 2
    assert response.outcome is Outcome.THROTTLED


ENVELOPE_FAILURES = [
    (answer(503), 503),
    (answer(504), 504),
    (answer(500), 500),
    (fail(httpx.ConnectError), 0),
    (fail(httpx.ReadTimeout), 0),
    (answer(200, content=b'{"responses": [oops'), 0),
    (answer(200, json={"value": []}), 0),
]


@pytest.mark.parametrize(("failure", "status"), ENVELOPE_FAILURES)
async def test_envelope_failure_is_retried_then_unavailable(fake, make, failure, status) -> None:
    fake.http = [failure] * 3
    responses = await make(max_attempts=3).batch(Tokens("token-1"), gets(2), deadline=FAR)
    assert len(fake.batches) == 3
    assert [(r.status, r.outcome) for r in responses] == [(status, Outcome.UNAVAILABLE)] * 2


@pytest.mark.parametrize(("failure", "status"), ENVELOPE_FAILURES)
async def test_transient_envelope_failure_recovers(fake, make, failure, status) -> None:
    fake.http = [failure]
    responses = await make().batch(Tokens("token-1"), gets(2), deadline=FAR)
    assert len(fake.batches) == 2
    assert [r.status for r in responses] == [200, 200]


@pytest.mark.parametrize("item", [error(503), error(500), error(504), MISSING])
async def test_item_failure_of_a_get_is_retried_alone(fake, make, item) -> None:
    fake.items["/things/1"] = [item] * 5
    responses = await make().batch(Tokens("token-1"), gets(3), deadline=FAR)
    assert fake.batches[1:] == [["/things/1"]] * 4
    assert [r.outcome for r in responses] == [Outcome.ANSWERED, Outcome.UNAVAILABLE, Outcome.ANSWERED]


async def test_item_500_of_a_post_is_not_retried(fake, make) -> None:
    requests = [GraphRequest("get", "GET", "/a"), GraphRequest("post", "POST", "/b", body={"x": 1})]
    fake.items = {"/a": [error(500)], "/b": [error(500)]}
    responses = await make().batch(Tokens("token-1"), requests, deadline=FAR)
    assert fake.batches == [["/a", "/b"], ["/a"]]
    assert [r.status for r in responses] == [200, 500]


@pytest.mark.parametrize("status", [400, 403, 404])
async def test_client_errors_are_never_retried(fake, make, clock, status) -> None:
    fake.items["/things/0"] = [error(status, "Request_BadRequest")]
    [response] = await make().batch(Tokens("token-1"), gets(1), deadline=FAR)
    assert (response.status, response.error_code, response.outcome) == (
        status,
        "Request_BadRequest",
        Outcome.ANSWERED,
    )
    assert len(fake.batches) == 1
    assert clock.sleeps == []


async def test_envelope_401_refreshes_the_token_once_for_all_envelopes(fake, make) -> None:
    fake.valid_tokens = {"token-2"}
    tokens = Tokens("token-1", "token-2")
    responses = await make().batch(tokens, gets(45), deadline=FAR)
    assert tokens.calls == [False, True]
    assert fake.bearers == ["token-1"] * 3 + ["token-2"] * 3
    assert all(r.status == 200 for r in responses)


async def test_item_401_refreshes_and_resends_only_that_item(fake, make, clock) -> None:
    fake.valid_tokens = {"token-1", "token-2"}
    fake.items["/things/1"] = [error(401, "InvalidAuthenticationToken")]
    tokens = Tokens("token-1", "token-2")
    responses = await make().batch(tokens, gets(3), deadline=FAR)
    assert tokens.calls == [False, True]
    assert fake.batches[1] == ["/things/1"]
    assert fake.bearers == ["token-1", "token-2"]
    assert [r.status for r in responses] == [200, 200, 200]
    assert clock.sleeps == []


async def test_second_401_raises_authentication_error(fake, make) -> None:
    fake.valid_tokens = set()
    tokens = Tokens("token-1", "token-2")
    with pytest.raises(GraphAuthenticationError) as raised:
        await make().batch(tokens, gets(45), deadline=FAR)
    assert tokens.calls == [False, True]
    assert (raised.value.status, raised.value.code) == (401, "InvalidAuthenticationToken")
    assert "token-" not in str(raised.value)


async def test_401_without_roles_is_an_answer_not_a_token_problem(fake, make) -> None:
    fake.items["/things/0"] = [error(401, "NoPermissionsInAccessToken")]
    tokens = Tokens("token-1")
    [response] = await make().batch(tokens, gets(1), deadline=FAR)
    assert (response.status, response.error_code) == (401, "NoPermissionsInAccessToken")
    assert tokens.calls == [False]


async def test_token_provider_errors_propagate_unwrapped(make) -> None:
    class TokenBroken(Exception):
        pass

    async def broken(force_refresh: bool) -> str:
        raise TokenBroken

    with pytest.raises(TokenBroken):
        await make().batch(broken, gets(45), deadline=FAR)


async def test_call_sends_one_request_with_auth_and_retries_throttling(fake, make, clock) -> None:
    url = "/users/abc?$select=id"
    fake.items[url] = [throttled("0.25")]
    response = await make().call(Tokens("token-1"), GraphRequest("one", "GET", url), deadline=FAR)
    assert fake.paths == ["/v1.0" + url] * 2
    assert fake.bearers == ["token-1"] * 2
    assert (response.id, response.status, response.body) == ("one", 200, {"url": url})
    assert clock.sleeps == [0.25]


@pytest.mark.parametrize("failure", [answer(200, content=b"<html>"), answer(503), fail(httpx.ReadTimeout)])
async def test_call_retries_a_get_then_ends_unavailable(fake, make, failure) -> None:
    fake.http = [failure] * 2
    response = await make(max_attempts=2).call(
        Tokens("token-1"), GraphRequest("g", "GET", "/me"), deadline=FAR
    )
    assert fake.paths == ["/v1.0/me"] * 2
    assert response.outcome is Outcome.UNAVAILABLE


@pytest.mark.parametrize(
    ("failure", "sent"),
    [
        (answer(500), 1),
        (answer(502), 1),
        (answer(504), 1),
        (fail(httpx.ReadTimeout), 1),
        (answer(503), 2),
        (answer(429, headers={"Retry-After": "1"}), 2),
        (fail(httpx.ConnectError), 2),
    ],
)
async def test_call_repeats_a_post_only_when_graph_cannot_have_done_it(fake, make, failure, sent) -> None:
    fake.http = [failure]
    request = GraphRequest("send", "POST", "/users/abc/sendMail", body={"message": {}})
    response = await make().call(Tokens("token-1"), request, deadline=FAR)
    assert len(fake.paths) == sent
    assert (response.outcome is Outcome.ANSWERED) == (sent == 2)
