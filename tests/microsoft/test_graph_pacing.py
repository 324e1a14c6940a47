"""GraphClient with a pacer (microsoft/pacing.py), against the in-process fake Graph: what each envelope
asks of the budgets, the pushback it reports, the items it does not send when no room comes in time, and
the costs of Microsoft's table."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from tests.microsoft.test_graph_client import FAR, Clock, FakeGraph, Tokens, throttled

from m365connect.microsoft.graph import GraphClient, GraphRequest
from m365connect.microsoft.pacing import Demand, Kind, PaceScope, Permit, carried, classify, demand

SCOPE = PaceScope("app", "tenant", interactive=True)


class RecordingPacer:
    """Admits everything (or nothing, with `refuse`) and records what it was asked and told."""

    def __init__(self, *, refuse: bool = False, probe_first: int = 0, slots: int | None = None) -> None:
        self.refuse = refuse
        self.slots = slots  # the Outlook slots each permit holds (None: none are tracked)
        self.probes_left = int(
            probe_first
        )  # the first (this many) Outlook permits are probes above the limit
        self.acquired: list[Demand] = []
        self.released: list[Permit] = []
        self.proven: list[bool] = []
        self.log: list[str] = []  # what it was told, in order
        self.sent_under: list[int] = []
        self.probe_told: list[bool] = []  # pushback's `probe`: a refused probe leaves the limit
        self.pushbacks: list[tuple[Kind, float | None, float | None, int]] = []
        self.in_flight = 0
        self.overtaken: set[str] = set()  # leases whose request a probe was ahead of at Microsoft

    async def acquire(self, scope: PaceScope, demand: Demand, *, deadline: float) -> Permit | None:
        assert scope == SCOPE
        assert deadline == FAR  # the call's own deadline bounds the wait
        self.acquired.append(demand)
        if self.refuse:
            return None
        self.in_flight += 1
        probe = self.probes_left > 0 and demand.outlook > 0
        self.probes_left -= probe
        held = tuple(range(min(self.slots, demand.outlook))) if self.slots and demand.outlook else ()
        limit = self.slots or 0
        if probe:  # the slots just above the limit (those under it are held by others)
            held = tuple(slot + limit for slot in held)
        return Permit(
            scope, demand, lease=f"lease-{len(self.acquired)}", slots=held, probe=probe, limit=limit
        )

    def probe_beside(self, permit: Permit) -> bool:
        return permit.lease in self.overtaken

    async def release(self, permit: Permit, *, proven: bool = False) -> None:
        self.in_flight -= 1
        self.released.append(permit)
        self.proven.append(proven)
        self.log.append("release")

    async def pushback(
        self,
        scope: PaceScope,
        kind: Kind,
        *,
        retry_after: float | None,
        pressure: float | None,
        throttled: int = 0,
        sent_under: int = 0,
        probe: bool = False,
    ) -> None:
        assert scope == SCOPE
        self.pushbacks.append((kind, retry_after, pressure, throttled))
        self.sent_under.append(sent_under)
        self.probe_told.append(probe)
        self.log.append("pushback")


class Statuses:
    """The client's answers and waits (a GraphObserver)."""

    def __init__(self) -> None:
        self.seen: list[int] = []
        self.waits: list[tuple[float, str]] = []

    def answered(self, status: int) -> None:
        self.seen.append(status)

    def waited(self, seconds: float, reason: str) -> None:
        self.waits.append((seconds, reason))


def lookups(n: int) -> list[GraphRequest]:
    url = "/users?$filter=proxyAddresses/any(x:x eq 'smtp:a@b.c')&$select=id"
    return [GraphRequest(id=str(i), method="GET", url=f"{url}&n={i}") for i in range(n)]


def probes(n: int) -> list[GraphRequest]:
    return [
        GraphRequest(id=str(i), method="GET", url=f"/users/u{i}/mailboxSettings?$select=userPurpose")
        for i in range(n)
    ]


@pytest.fixture
def graph() -> FakeGraph:
    return FakeGraph()


@pytest.fixture
async def paced(graph: FakeGraph) -> AsyncIterator[Callable[..., tuple[GraphClient, RecordingPacer]]]:
    clock = Clock()
    async with httpx.AsyncClient(transport=httpx.MockTransport(graph)) as http:

        def build(observer: Any = None, **options: Any) -> tuple[GraphClient, RecordingPacer]:
            pacer = RecordingPacer(**options)
            client = GraphClient(
                http=http,
                graph_url="https://graph.test/",
                sleep=clock.sleep,
                clock=clock,
                pacer=pacer,
                observer=observer,
            )
            return client, pacer

        yield build


@pytest.mark.parametrize(
    ("method", "url", "expected"),
    [
        ("GET", "/users?$filter=x&$select=id", ("directory", 1)),  # the lookup: GET users 2, $select -1
        ("GET", "/users", ("directory", 2)),
        ("GET", "/users/u1", ("directory", 1)),
        ("GET", "/users('a@b.c')", ("directory", 1)),
        ("GET", "/users?$expand=manager", ("directory", 3)),
        ("GET", "/users?$top=5&$select=id", ("directory", 1)),
        ("GET", "/users?%24select=id&%24TOP=+5", ("directory", 1)),  # names decoded, any case
        ("GET", "/users?$filter=a%26b&$expand=manager&$top=25", ("directory", 3)),  # $top 25: no discount
        ("GET", "/users/u1/mailboxSettings?$select=userPurpose", ("outlook", 0)),
        ("POST", "/users/u1/sendMail", ("outlook", 0)),
        ("GET", "/users/u1/memberOf", None),
        ("GET", "/applications", None),
    ],
)
def test_requests_are_charged_as_microsofts_table_says(method: str, url: str, expected: Any) -> None:
    assert classify(GraphRequest(id="1", method=method, url=url)) == expected


def test_an_envelope_holds_at_most_four_outlook_slots_and_a_call_one() -> None:
    assert demand(probes(20), range(20), batch=True) == Demand(units=0, outlook=4)
    assert demand(probes(3), range(3), batch=True) == Demand(units=0, outlook=3)
    assert demand(probes(1), [0], batch=False) == Demand(units=0, outlook=1)
    assert demand(lookups(20), range(20), batch=True) == Demand(units=20, outlook=0)


async def test_each_envelope_asks_for_its_units_or_slots_and_releases_them(graph: FakeGraph, paced) -> None:
    client, pacer = paced()
    await client.batch(Tokens("token-1"), lookups(45), deadline=FAR, scope=SCOPE)
    await client.batch(Tokens("token-1"), probes(25), deadline=FAR, scope=SCOPE)
    assert pacer.acquired == [
        Demand(units=20),
        Demand(units=20),
        Demand(units=5),
        Demand(outlook=4),
        Demand(outlook=4),
    ]
    assert len(pacer.released) == 5
    assert pacer.in_flight == 0
    assert pacer.pushbacks == []


async def test_a_probe_carries_one_outlook_item_above_the_limit(graph: FakeGraph, paced) -> None:
    """A refused probe costs one 429, not 4 or an envelope of 20; the rest go in an envelope of their
    own, within a permit of their own; a probe answered without pushback is released as proven."""
    client, pacer = paced(probe_first=True, slots=4)
    requests = probes(20)
    responses = await client.batch(Tokens("token-1"), requests, deadline=FAR, scope=SCOPE)
    assert all(r.status == 200 for r in responses)
    assert [len(batch) for batch in graph.batches] == [1, 19]
    assert pacer.acquired == [Demand(outlook=4), Demand(outlook=4)]
    assert [permit.probe for permit in pacer.released] == [True, False]
    assert pacer.proven == [True, True]


@pytest.mark.parametrize(
    ("slots", "limit", "probe", "wanted", "carries"),
    [
        ((4, 5, 6, 7), 4, True, 4, 1),  # the 4 beneath are others': one more call proves the limit wrong
        ((4,), 4, True, 1, 1),
        ((2, 3, 4, 5), 4, True, 4, 3),  # 2 beneath are others': 2 + 3 in flight, one above the limit
        ((8, 9, 10, 11), 8, True, 4, 1),
        ((0, 1), 2, False, 4, 2),  # a limit below 4: as many items as slots
        ((0, 1, 2, 3), 4, False, 4, None),  # the whole envelope
    ],
)
def test_what_an_envelope_carries_within_its_permit(
    slots: tuple[int, ...], limit: int, probe: bool, wanted: int, carries: int | None
) -> None:
    permit = Permit(SCOPE, Demand(outlook=wanted), lease="x", slots=slots, probe=probe, limit=limit)
    assert carried(permit, Demand(outlook=wanted)) == carries


async def test_an_envelope_carries_no_more_outlook_items_than_its_permit_has_slots(
    graph: FakeGraph, paced
) -> None:
    """Under a limit of 2 (halved after a 429), an envelope that Microsoft would run 4 at a time carries 2
    Outlook items; with 4 slots, a whole envelope of 20 goes (Microsoft runs 4 of them at once)."""
    client, pacer = paced(slots=2)
    responses = await client.batch(Tokens("token-1"), probes(10), deadline=FAR, scope=SCOPE)
    assert all(r.status == 200 for r in responses)
    assert [len(batch) for batch in graph.batches] == [2, 2, 2, 2, 2]
    assert pacer.in_flight == 0
    graph.batches.clear()
    client, pacer = paced(slots=4)
    await client.batch(Tokens("token-1"), probes(20) + lookups(3), deadline=FAR, scope=SCOPE)
    assert [len(batch) for batch in graph.batches] == [20, 3]


async def test_a_throttled_probe_is_not_proven_and_its_item_goes_again_at_once(
    graph: FakeGraph, paced
) -> None:
    requests = probes(6)
    graph.items[requests[0].url] = [throttled("1")]
    statuses = Statuses()
    client, pacer = paced(statuses, probe_first=True, slots=4)
    responses = await client.batch(Tokens("token-1"), requests, deadline=FAR, scope=SCOPE)
    # The refused item is sent again with the rest, within a permit of their own, not in a later wave.
    assert all(r.status == 200 for r in responses)
    assert graph.batches == [[requests[0].url], [request.url for request in requests]]
    assert sorted(statuses.seen) == [200] * 6 + [429]  # every answer counted, the refused one too
    assert statuses.waits == []
    # The pushback is told before the probe's release, and the probe is not proven. It holds probing but
    # neither halves the limit nor pauses anything (no Retry-After passed on): the probe alone was above it.
    assert pacer.pushbacks[0] == ("outlook", None, None, 1)
    assert pacer.probe_told[0] is True
    assert pacer.log[:2] == ["pushback", "release"]
    assert pacer.sent_under[0] == 4  # the limit the probe was sent under: a later halving is not repeated
    assert pacer.released[0].probe
    assert pacer.proven[0] is False
    assert pacer.in_flight == 0


async def test_a_refused_probe_is_sent_again_once(graph: FakeGraph, paced) -> None:
    """Should the second permit be a probe again (the store lost the hold) and be refused too, its item waits
    for the next wave, as any 429 does: no loop of probes."""
    requests = probes(3)
    graph.items[requests[0].url] = [throttled("1"), throttled("1")]
    client, pacer = paced(probe_first=2, slots=4)
    responses = await client.batch(Tokens("token-1"), requests, deadline=FAR, scope=SCOPE)
    assert all(r.status == 200 for r in responses)
    urls = [request.url for request in requests]
    # The probe, its item again as the next probe (refused: kept for the next wave), the rest, the wave.
    assert graph.batches == [urls[:1], urls[:1], urls[1:], urls[:1]]
    # Both refusals were probes': no pause from either; the wave waited its Retry-After.
    assert [pushback[1] for pushback in pacer.pushbacks] == [None, None]
    assert pacer.proven == [False, False, True, True]


async def test_without_a_scope_nothing_is_paced(graph: FakeGraph, paced) -> None:
    client, pacer = paced()
    await client.batch(Tokens("token-1"), lookups(5), deadline=FAR)
    assert pacer.acquired == []
    assert len(graph.batches) == 1


async def test_a_429_and_the_throttle_percentage_are_reported_once_per_envelope(
    graph: FakeGraph, paced
) -> None:
    requests = probes(3) + lookups(2)
    graph.items[requests[0].url] = [throttled("2")]
    graph.items[requests[1].url] = [throttled("5")]
    graph.items[requests[3].url] = [(200, {"x-ms-throttle-limit-percentage": "0.91"}, {"value": []})]
    client, pacer = paced()
    responses = await client.batch(Tokens("token-1"), requests, deadline=FAR, scope=SCOPE)
    assert all(r.status == 200 for r in responses)  # re-sent after the wave's wait
    assert pacer.pushbacks[:2] == [("directory", None, 0.91, 0), ("outlook", 5.0, None, 2)]


async def test_items_without_room_before_the_deadline_are_throttled_unsent(graph: FakeGraph, paced) -> None:
    client, pacer = paced(refuse=True)
    responses = await client.batch(Tokens("token-1"), probes(3), deadline=FAR, scope=SCOPE)
    assert [r.status for r in responses] == [429, 429, 429]
    assert graph.batches == []  # nothing reached Graph
    assert pacer.released == []


async def test_interactive_calls_use_a_pool_of_their_own(graph: FakeGraph) -> None:
    """A synchronous request never queues for a connection behind background jobs' envelopes."""
    seen: dict[str, int] = {"background": 0, "interactive": 0}

    def counting(pool: str) -> Callable[[httpx.Request], httpx.Response]:
        def handle(request: httpx.Request) -> httpx.Response:
            seen[pool] += 1
            return graph(request)

        return handle

    background = httpx.AsyncClient(transport=httpx.MockTransport(counting("background")))
    interactive = httpx.AsyncClient(transport=httpx.MockTransport(counting("interactive")))
    async with background, interactive:
        client = GraphClient(http=background, graph_url="https://graph.test/", interactive_http=interactive)
        await client.batch(Tokens("token-1"), probes(25), deadline=FAR, scope=SCOPE)
        assert seen == {"background": 0, "interactive": 2}
        await client.call(Tokens("token-1"), probes(1)[0], deadline=FAR, scope=SCOPE)
        assert seen == {"background": 0, "interactive": 3}
        quiet = PaceScope("app", "tenant", interactive=False)
        await client.batch(Tokens("token-1"), probes(25), deadline=FAR, scope=quiet)
        await client.call(Tokens("token-1"), probes(1)[0], deadline=FAR)
        assert seen == {"background": 3, "interactive": 3}


async def test_a_429_beside_a_probe_is_told_as_the_probe_s_refusal(graph: FakeGraph, paced) -> None:
    """Microsoft admits by arrival: with a probe there, a call within the limit may be refused in its
    place. The pacer says so (probe_beside); the 429 then holds probing without halving or pausing."""
    for beside in (False, True):
        requests = probes(4)
        graph.items[requests[0].url] = [throttled("3")]
        client, pacer = paced(slots=4)
        if beside:
            pacer.overtaken.add("lease-1")
        responses = await client.batch(Tokens("token-1"), requests, deadline=FAR, scope=SCOPE)
        assert all(r.status == 200 for r in responses)  # the refused item went again in the next wave
        assert not pacer.released[0].probe
        assert pacer.probe_told[0] is beside
        assert pacer.pushbacks[0] == ("outlook", None if beside else 3.0, None, 1)
        assert pacer.proven[0] is False


class SlowGraph:
    """A real HTTP/1.1 server on localhost (keep-alive): answers every request with 200 and an empty
    JSON object after `delay` seconds, longer for paths containing `slow`; `seen` records, per request
    line, when the request was in and when its answer was written (time.monotonic), and
    `slow_arrived` is set when a slow request is in."""

    def __init__(self, delay: float = 0.05) -> None:
        self.delay = delay
        self.server: asyncio.Server | None = None
        self.seen: dict[str, tuple[float, float]] = {}
        self.slow_arrived = asyncio.Event()

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/"

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                lines = head.decode("latin-1").split("\r\n")
                length = next(
                    (
                        int(line.split(":", 1)[1])
                        for line in lines
                        if line.lower().startswith("content-length:")
                    ),
                    0,
                )
                await reader.readexactly(length)
                arrived = time.monotonic()
                if "slow" in lines[0]:
                    self.slow_arrived.set()
                await asyncio.sleep(self.delay * (6 if "slow" in lines[0] else 1))
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
                )
                await writer.drain()
                self.seen[lines[0].split(" ")[1]] = (arrived, time.monotonic())
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def test_a_permit_learns_when_its_request_was_on_the_wire(graph: FakeGraph) -> None:
    """Holding slots is not being at Microsoft: a request may wait for a connection with its slots held.
    The permit's Flight says when the request went out (after that wait) and when its answer came: in
    the order the server saw them, not by timing."""
    served = SlowGraph(0.05)
    async with served as url, httpx.AsyncClient(limits=httpx.Limits(max_connections=1)) as http:
        pacer = RecordingPacer(slots=4)
        client = GraphClient(http=http, graph_url=url, pacer=pacer)
        # Another request holds the only connection (unpaced: no scope) until the server answers it.
        other = asyncio.create_task(
            client.call(Tokens("token-1"), GraphRequest(id="0", method="GET", url="/slow"), deadline=FAR)
        )
        await served.slow_arrived.wait()
        asked = time.monotonic()
        response = await client.call(Tokens("token-1"), probes(1)[0], deadline=FAR, scope=SCOPE)
        await other
    assert response.status == 200
    (permit,) = pacer.released
    flight = permit.flight
    assert flight.sent is not None
    assert flight.answered is not None
    (_, slow_answered) = next(times for line, times in served.seen.items() if "slow" in line)
    (arrived, answered) = next(times for line, times in served.seen.items() if "mailboxSettings" in line)
    # Asked for while the connection was busy; sent only once the server had answered the other request.
    assert asked < slow_answered < flight.sent
    # Sent before the server had it; answered after the server wrote the answer.
    assert flight.sent <= arrived <= answered <= flight.answered
    assert flight.clean is None  # told by the pacer's release (RecordingPacer does not)
