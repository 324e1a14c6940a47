"""The Microsoft Graph client (app-only): single calls and JSON batches, with one retry policy.

Every HTTP request to Graph goes through `GraphClient._send`. `call` and `batch` share one retry
loop (`_run`): a request is sent, its answer is judged by `graph_retry.verdict`, and the retryable
ones are re-sent together - re-batched, never the whole batch - after the largest `Retry-After`
among them (or exponential backoff with jitter), until `max_attempts` or the deadline. A 401 is
answered by one forced token refresh per call; a second 401 raises GraphAuthenticationError.
Throttling and unavailability end as per-request outcomes, never as exceptions. docs/graph-client.md
has the whole policy.

With a `Pacer` and a `PaceScope` (the app, the tenant, interactive or not), each request - a call or one
envelope - first waits for room in the scope's budgets, holds its Outlook slots while in flight, and
reports Microsoft's pushback (429 Retry-After, x-ms-throttle-limit-percentage) to the pacer, which every
process shares (microsoft/pacing.py). Without them nothing changes: the retry policy is the fallback.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import httpx

from m365connect.microsoft.graph_batching import MAX_BATCH_SIZE, chunks, envelope, unpack
from m365connect.microsoft.graph_errors import GraphAuthenticationError, GraphError
from m365connect.microsoft.graph_retry import Verdict, backoff, retry_after, verdict
from m365connect.microsoft.graph_types import (
    NO_ANSWER,
    GraphRequest,
    GraphResponse,
    Outcome,
    Reply,
    TokenProvider,
    error_field,
)
from m365connect.microsoft.http_pools import HttpRequester
from m365connect.microsoft.observers import GraphObserver, NoGraphObserver
from m365connect.microsoft.pacing import (
    Flight,
    Kind,
    Pacer,
    PaceScope,
    Permit,
    carried,
    classify,
    demand,
    is_outlook,
    pressure,
    split,
)

__all__ = [
    "GraphAuthenticationError",
    "GraphClient",
    "GraphError",
    "GraphRequest",
    "GraphResponse",
    "Outcome",
    "PaceScope",
    "TokenProvider",
]

logger = logging.getLogger("m365connect.microsoft.graph")

Sleep = Callable[[float], Awaitable[None]]
# Sends the requests at these indexes with this bearer token; one Reply per index.
_SendGroup = Callable[[str, Sequence[int]], Awaitable[dict[int, Reply]]]
# The Flight of the permit whose request is being sent (_send_permitted sets it around `send`, _send traces
# the request into it): the send callbacks stay free of pacing.
_FLIGHT: contextvars.ContextVar[Flight | None] = contextvars.ContextVar("graph_flight", default=None)
# The answer of the items the pacer found no room for before the deadline: throttled, never sent.
PACED_OUT = Reply(
    429,
    {"retry-after": "1"},
    {"error": {"code": "TooManyRequests", "message": "No room in the Graph budget before the deadline."}},
)


class _TokenSession:
    """The bearer token of one `call`/`batch`: fetched once, force-refreshed at most once."""

    def __init__(self, provider: TokenProvider) -> None:
        self._provider = provider
        self._token: str | None = None
        self._refreshed = False
        self._lock = asyncio.Lock()

    async def token(self) -> str:
        async with self._lock:
            if self._token is None:
                self._token = await self._provider(False)
            return self._token

    async def rejected(self, bearer: str, reply: Reply) -> None:
        """Graph answered 401 to `bearer`: refresh it, unless it already is the refreshed token."""
        async with self._lock:
            if bearer != self._token:
                return  # a concurrent batch has already refreshed it
            if self._refreshed:
                raise GraphAuthenticationError(
                    "Graph rejected a freshly refreshed token",
                    status=reply.status,
                    code=error_field(reply.body, "code"),
                    request_id=reply.headers.get("request-id"),
                    client_request_id=reply.headers.get("client-request-id"),
                )
            self._refreshed = True
            self._token = await self._provider(True)


class GraphClient:
    """Microsoft Graph v1.0 over an injected HTTP client (httpx.AsyncClient or PooledClients); holds no
    per-tenant state."""

    def __init__(
        self,
        *,
        http: HttpRequester,
        graph_url: str,
        max_batches_in_flight: int = 8,
        max_attempts: int = 5,
        max_retry_after: float = 30.0,
        sleep: Sleep = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        observer: GraphObserver | None = None,
        pacer: Pacer | None = None,
        interactive_http: HttpRequester | None = None,
    ) -> None:
        """`interactive_http`: a pool of its own for interactive scopes (a synchronous bulk request, a
        verify-now), so that they never queue for a connection behind background jobs; default `http`."""
        if max_batches_in_flight < 1 or max_attempts < 1 or max_retry_after < 0:
            raise ValueError("max_batches_in_flight and max_attempts must be >= 1, max_retry_after >= 0")
        self._http = http
        self._interactive_http = interactive_http or http
        self._base = graph_url.rstrip("/") + "/v1.0"
        self._max_in_flight = max_batches_in_flight
        self._max_attempts = max_attempts
        self._max_retry_after = max_retry_after
        self._sleep = sleep
        self._clock = clock
        self._observer: GraphObserver = observer or NoGraphObserver()
        self._pacer = pacer

    async def call(
        self, token: TokenProvider, request: GraphRequest, *, deadline: float, scope: PaceScope | None = None
    ) -> GraphResponse:
        """Send one request; `deadline` is on the `clock` (time.monotonic) and bounds the retries (and,
        with a pacer and a `scope`, the waits for budget)."""

        http = self._pool(scope)

        async def send(bearer: str, indexes: Sequence[int]) -> dict[int, Reply]:
            answer = await self._send(
                bearer, request.method, request.url, request.headers, request.body, http
            )
            return dict.fromkeys(indexes, answer)

        [response] = await self._run(_TokenSession(token), [request], send, 1, deadline, scope)
        return response

    async def batch(
        self,
        token: TokenProvider,
        requests: Sequence[GraphRequest],
        *,
        deadline: float,
        scope: PaceScope | None = None,
    ) -> list[GraphResponse]:
        """Send any number of requests as `$batch` envelopes of <= 20; answers in input order."""

        http = self._pool(scope)

        async def send(bearer: str, indexes: Sequence[int]) -> dict[int, Reply]:
            answer = await self._send(bearer, "POST", "/$batch", {}, envelope(requests, indexes), http)
            return unpack(answer, indexes)

        if not requests:
            return []
        return await self._run(_TokenSession(token), requests, send, MAX_BATCH_SIZE, deadline, scope)

    def _pool(self, scope: PaceScope | None) -> HttpRequester:
        """The connection pool of a call: interactive scopes have their own."""
        return self._interactive_http if scope is not None and scope.interactive else self._http

    async def _run(
        self,
        session: _TokenSession,
        requests: Sequence[GraphRequest],
        send: _SendGroup,
        group_size: int,
        deadline: float,
        scope: PaceScope | None,
    ) -> list[GraphResponse]:
        replies: dict[int, Reply] = {}
        pending: Sequence[int] = range(len(requests))
        paced = _Paced(scope, batch=group_size > 1, deadline=deadline) if self._pacer and scope else None
        for attempt in range(1, self._max_attempts + 1):
            replies.update(await self._wave(session, requests, pending, send, group_size, paced))
            pending = [i for i in pending if verdict(requests[i].method, replies[i]) is Verdict.RETRY]
            if not pending or attempt == self._max_attempts:
                break
            delay = self._delay([replies[i] for i in pending], attempt)
            if self._clock() + delay > deadline:
                break
            logger.info("graph.retry", extra={"attempt": attempt, "items": len(pending), "wait": delay})
            throttled = any(replies[i].status == 429 for i in pending)
            self._observer.waited(delay, "throttled" if throttled else "unavailable")
            await self._sleep(delay)
        return [replies[i].response(request.id) for i, request in enumerate(requests)]

    async def _wave(
        self,
        session: _TokenSession,
        requests: Sequence[GraphRequest],
        pending: Sequence[int],
        send: _SendGroup,
        group_size: int,
        paced: _Paced | None,
    ) -> dict[int, Reply]:
        """Send `pending` once, in groups, at most `max_batches_in_flight` groups at a time."""
        replies: dict[int, Reply] = {}
        in_flight = asyncio.Semaphore(self._max_in_flight)

        async def send_group(indexes: Sequence[int]) -> None:
            async with in_flight:
                replies.update(await self._authenticated(session, requests, indexes, send, paced))

        try:
            async with asyncio.TaskGroup() as group:
                for indexes in chunks(pending, group_size):
                    group.create_task(send_group(indexes))
        except ExceptionGroup as failed:
            # Callers catch GraphAuthenticationError or the token client's errors, not a group.
            raise failed.exceptions[0] from None
        return replies

    async def _authenticated(
        self,
        session: _TokenSession,
        requests: Sequence[GraphRequest],
        indexes: Sequence[int],
        send: _SendGroup,
        paced: _Paced | None,
    ) -> dict[int, Reply]:
        """Send a group; re-send at once the items answered 401, after the session refreshed the token."""
        replies: dict[int, Reply] = {}
        todo = indexes
        while todo:
            bearer = await session.token()
            if paced is None:
                answers = await send(bearer, todo)
            else:
                answers = await self._paced_send(paced, requests, todo, send, bearer)
            for answer in answers.values():
                if answer is not PACED_OUT:
                    self._observer.answered(answer.status)
            replies.update(answers)
            todo = [i for i in todo if verdict(requests[i].method, replies[i]) is Verdict.REAUTH]
            if todo:
                await session.rejected(bearer, replies[todo[0]])
        return replies

    async def _paced_send(
        self,
        paced: _Paced,
        requests: Sequence[GraphRequest],
        indexes: Sequence[int],
        send: _SendGroup,
        bearer: str,
        *,
        resend_refused_probe: bool = True,
    ) -> dict[int, Reply]:
        """Send a group within the scope's budgets: wait for room, hold it in flight, report pushback."""
        assert self._pacer is not None  # _Paced exists only with a pacer
        need = demand(requests, indexes, batch=paced.batch)
        if need.empty:
            return await send(bearer, indexes)
        permit = await self._pacer.acquire(paced.scope, need, deadline=paced.deadline)
        if permit is None:
            return dict.fromkeys(indexes, PACED_OUT)
        outlook = carried(permit, need)
        if outlook is None:
            return await self._send_permitted(paced, permit, requests, indexes, send, bearer)
        # Fewer slots than the envelope would run at once, or a probe: send what the slots cover, then the
        # rest within a permit of its own (pacing.carried says why).
        first, rest = split(requests, indexes, outlook)
        answers = await self._send_permitted(paced, permit, requests, first, send, bearer)
        refused: list[int] = []
        if permit.probe and resend_refused_probe:
            # Microsoft refused the probe for being above its limit (which stays, probing held): its
            # Outlook items go again at once with the rest, within the limit, not a wave later.
            refused = [i for i in first if answers[i].status == 429 and is_outlook(requests[i])]
            for index in refused:
                self._observer.answered(answers.pop(index).status)  # its answer here is the next one
        rest = sorted([*refused, *rest])
        if rest:
            answers.update(
                await self._paced_send(
                    paced,
                    requests,
                    rest,
                    send,
                    bearer,
                    resend_refused_probe=resend_refused_probe and not refused,
                )
            )
        return answers

    async def _send_permitted(
        self,
        paced: _Paced,
        permit: Permit,
        requests: Sequence[GraphRequest],
        indexes: Sequence[int],
        send: _SendGroup,
        bearer: str,
    ) -> dict[int, Reply]:
        """Send a group within a permit; report Microsoft's pushback, then release the permit."""
        assert self._pacer is not None
        # A permit of Outlook slots learns when its request was on the wire (_send): the pacer judges
        # probes on that, not on the slots held.
        flying = _FLIGHT.set(permit.flight if permit.lease else None)
        try:
            answers = await send(bearer, indexes)
        except BaseException:
            await self._pacer.release(permit)
            raise
        finally:
            _FLIGHT.reset(flying)
        # Pushback first: an Outlook 429 halves the budget's limit before this permit's release could
        # raise it (a probe is proven only by an answer without pushback). A 429 of a call that was at
        # Microsoft while a probe was there counts as the probe's refusal: the probe may have been let in
        # and this call refused in its place.
        pushed: set[Kind] = {"outlook"}  # not proven unless the pushback is told and found none
        try:
            probe = permit.probe or self._pacer.probe_beside(permit)
            pushed = await self._push_back(
                paced.scope, requests, answers, sent_under=permit.limit, probe=probe
            )
        finally:
            await self._pacer.release(permit, proven="outlook" not in pushed)
        return answers

    async def _push_back(
        self,
        scope: PaceScope,
        requests: Sequence[GraphRequest],
        answers: dict[int, Reply],
        *,
        sent_under: int = 0,
        probe: bool = False,
    ) -> set[Kind]:
        """Tell the pacer, once per budget kind, its 429s' longest Retry-After and the highest pressure;
        the kinds Microsoft pushed back on. A refused probe's Outlook 429s hold probing but neither halve
        the limit nor pause anything: the probe alone was above the limit, and the calls within it may go
        on."""
        assert self._pacer is not None
        waits: dict[Kind, float] = {}
        counts: dict[Kind, int] = {}
        pressures: dict[Kind, float] = {}
        for index, answer in answers.items():
            found = classify(requests[index])
            if found is None:
                continue
            kind = found[0]
            if answer.status == 429:
                counts[kind] = counts.get(kind, 0) + 1
                wait = retry_after(answer.headers)
                waits[kind] = max(
                    waits.get(kind, 0.0), min(self._max_retry_after, 1.0 if wait is None else wait)
                )
            level = pressure(answer.headers)
            if level is not None:
                pressures[kind] = max(pressures.get(kind, 0.0), level)
        for kind in sorted(set(waits) | set(pressures)):
            await self._pacer.pushback(
                scope,
                kind,
                retry_after=None if probe and kind == "outlook" else waits.get(kind),
                pressure=pressures.get(kind),
                throttled=counts.get(kind, 0),
                sent_under=sent_under,
                probe=probe and kind == "outlook",
            )
        return set(waits) | set(pressures)

    def _delay(self, replies: Sequence[Reply], attempt: int) -> float:
        """The largest Retry-After among the retried answers; backoff stands in for a missing one."""
        fallback = backoff(attempt, self._max_retry_after)
        waits = [retry_after(reply.headers) for reply in replies]
        return min(self._max_retry_after, max(fallback if wait is None else wait for wait in waits))

    async def _send(
        self,
        bearer: str,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: Any,
        http: HttpRequester,
    ) -> Reply:
        """Send one HTTP request to Graph: the only place that talks HTTP to it."""
        sent = httpx.Headers({"client-request-id": str(uuid.uuid4())})
        sent.update(headers)
        sent["Authorization"] = f"Bearer {bearer}"
        flight = _FLIGHT.get()
        extensions = None if flight is None else {"trace": flight.trace}
        try:
            response = await http.request(
                method, self._base + url, headers=sent, json=body, extensions=extensions
            )
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            logger.warning("graph.unsent", extra={"method": method, "error": type(exc).__name__})
            return Reply(0, {}, None, unsent=True)
        except httpx.RequestError as exc:
            logger.warning("graph.no_answer", extra={"method": method, "error": type(exc).__name__})
            return NO_ANSWER
        return _parse(response)


class _Paced:
    """The pacing of one `call`/`batch`: its scope, whether its groups are envelopes, its deadline."""

    __slots__ = ("batch", "deadline", "scope")

    def __init__(self, scope: PaceScope, *, batch: bool, deadline: float) -> None:
        self.scope = scope
        self.batch = batch
        self.deadline = deadline


def _parse(response: httpx.Response) -> Reply:
    """The answer as a Reply; a 2xx whose body is not JSON counts as no answer."""
    headers = {name.lower(): value for name, value in response.headers.items()}
    if not response.content:
        return Reply(response.status_code, headers, None)
    try:
        body: Any = response.json()
    except ValueError:
        if response.is_success:
            logger.warning("graph.malformed_json", extra={"status": response.status_code})
            return Reply(0, headers, None)
        body = None
    return Reply(response.status_code, headers, body)
