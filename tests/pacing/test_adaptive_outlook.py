"""The adaptive Outlook limit (pacing/store.py), on each store (SQLite, PostgreSQL, Redis): a probe above
the limit that Microsoft answers without pushback raises it for every process; one that is refused does
not; a 429 halves what is in flight and holds probing; the limit never passes its maximum."""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from m365connect.db.engine import create_engine
from m365connect.microsoft.pacing import Demand, PaceScope, Permit
from m365connect.pacing.pacer import NoPaceObserver, ProbeOutcome, StorePacer, budget_key
from m365connect.pacing.redis_store import RedisPaceStore
from m365connect.pacing.repository import DatabaseStore
from m365connect.pacing.store import PaceStore, Taken
from m365connect.settings import Settings
from m365connect.state import build_pacer
from tests.conftest import BACKENDS, truncate
from tests.pacing.support import BACKGROUND, SCOPE, policy
from tests.redis_support import PATIENT_SECONDS, REDIS_URL, delete_keys, redis_admin

KEY = budget_key("outlook", SCOPE)


class Probes:
    """Counts the probes' outcomes (a PaceObserver)."""

    def __init__(self) -> None:
        self.outcomes: list[str] = []

    def waited(self, kind: str, interactive: bool, seconds: float) -> None:
        """Not counted."""

    def pushed_back(self, kind: str, *, throttled: int, paused: bool, slowed: bool) -> None:
        """Not counted."""

    def probed(self, outcome: ProbeOutcome) -> None:
        self.outcomes.append(outcome)


@pytest.fixture(params=[*BACKENDS, "redis"])
async def stores(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[list[PaceStore]]:
    """Two stores on one shared state, as two processes have: two engines, or two Redis clients."""
    if request.param != "redis":
        if request.param == "sqlite":
            path = tmp_path / "m365connect.db"
            shutil.copy(request.getfixturevalue("sqlite_template"), path)
            url = f"sqlite+aiosqlite:///{path}"
        else:
            url = request.getfixturevalue("postgres_url")
            await truncate(url, ("graph_pace_budgets", "graph_pace_slots"))
        engines = [create_engine(url) for _ in range(2)]
        made: list[PaceStore] = [DatabaseStore(engine) for engine in engines]
        try:
            yield made
        finally:
            for store in made:
                await store.aclose()
            for engine in engines:
                await engine.dispose()
            if request.param != "sqlite":  # the run's database outlives the test: leave no budget behind
                await truncate(url, ("graph_pace_budgets", "graph_pace_slots"))
        return
    prefix = f"m365connect:test:{uuid.uuid4().hex}:"
    made = [RedisPaceStore.from_url(REDIS_URL, prefix=prefix, timeout=PATIENT_SECONDS) for _ in range(2)]
    try:
        yield made
    finally:
        for store in made:
            await store.aclose()
        async with redis_admin() as client:
            await delete_keys(client, f"{prefix}*")


def pacer(store: PaceStore, observer: Probes | None = None, **changes: Any) -> StorePacer:
    values: dict[str, Any] = {"outlook_max_concurrency": 12, "outlook_hold_seconds": 30.0}
    return StorePacer(store, policy(**{**values, **changes}), observer=observer)


def soon(seconds: float = 5.0) -> float:
    return time.monotonic() + seconds


async def hold(paced: StorePacer, count: int, slots: int = 4) -> list[Permit]:
    """`count` permits of `slots` Outlook slots, taken a tick of SQLite's millisecond clock apart, each
    sent as it is taken (a probe's witnesses: calls sent before it and still out well into its flight)."""
    permits = []
    for _ in range(count):
        permit = await paced.acquire(BACKGROUND, Demand(outlook=slots), deadline=soon())
        assert permit is not None
        permits.append(sent(permit))
        await asyncio.sleep(0.002)
    return permits


def sent(permit: Permit) -> Permit:
    """The permit's request goes out now (what graph.py's trace records: pacing.Flight)."""
    permit.flight.sent, permit.flight.answered = time.monotonic(), None
    return permit


async def done(paced: StorePacer, permit: Permit, proven: bool = False) -> None:
    """The permit's answer is in now (if it was sent and not yet answered): release it."""
    if permit.flight.sent is not None and permit.flight.answered is None:
        permit.flight.answered = time.monotonic()
    await paced.release(permit, proven=proven)


async def take(store: PaceStore, key: str, holder: str, max_slots: int = 10) -> Taken:
    """One background slot for `holder`."""
    return await store.take_slots(key, holder=holder, n=1, lease=30.0, max_slots=max_slots, interactive=False)


async def limit_of(store: PaceStore) -> tuple[int, bool]:
    """The budget's limit and whether a hold runs."""
    state = await store.state(KEY, interactive_seconds=None)
    assert state is not None
    return state.slot_limit, state.hold_until > state.now


def limit_logs(caplog: pytest.LogCaptureFixture) -> list[tuple[str, Any, Any, Any]]:
    """The logged changes of an app's Outlook limit: event, app id, limit, raised_to."""
    return [
        (r.getMessage(), getattr(r, "app_id", None), getattr(r, "limit", None), getattr(r, "raised_to", None))
        for r in caplog.records
        if r.getMessage().startswith("pacing.outlook.")
    ]


async def test_a_probe_answered_without_pushback_raises_the_limit_for_every_process(
    stores: list[PaceStore], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="m365connect.pacing")
    probes = Probes()
    first, second = pacer(stores[0], probes), pacer(stores[1])
    (inside,) = await hold(first, 1)
    assert inside.slots == (0, 1, 2, 3)
    assert not inside.probe
    (probe,) = await hold(first, 1)  # the 4 slots under the limit are held: the next 4 are a probe
    assert probe.probe
    assert probe.slots == (4, 5, 6, 7)
    # While the probe is in flight nobody else probes: the limit is still 4 and slots 4..7 are taken.
    assert await second.acquire(BACKGROUND, Demand(outlook=1), deadline=soon(0.3)) is None
    await done(first, probe, proven=True)
    # Not yet: the calls beneath it must come back without pushback too (a partly refused envelope
    # ran fewer calls than its slots).
    assert await limit_of(stores[1]) == (4, False)
    await done(first, inside, proven=True)
    assert await limit_of(stores[1]) == (8, False)
    # Another process now gets 8 in flight without probing.
    permits = await hold(second, 2)
    assert [permit.probe for permit in permits] == [False, False]
    assert sorted(slot for permit in permits for slot in permit.slots) == list(range(8))
    for permit in permits:
        await done(second, permit, proven=True)
    assert probes.outcomes == ["raised"]
    assert limit_logs(caplog) == [("pacing.outlook.raised", SCOPE.app_id, 4, 8)]


async def test_a_refused_probe_leaves_the_limit(
    stores: list[PaceStore], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="m365connect.pacing")
    probes = Probes()
    paced = pacer(stores[0], probes)
    inside, probe = await hold(paced, 2)
    assert probe.probe
    await done(paced, probe, proven=False)
    await done(paced, inside, proven=True)  # proving what is under the limit changes nothing
    assert await limit_of(stores[0]) == (4, False)
    assert probes.outcomes == ["refused"]
    assert limit_logs(caplog) == [("pacing.outlook.refused", SCOPE.app_id, 4, None)]


@pytest.mark.parametrize(("beneath", "probe_slots"), [(4, 1), (2, 3), (4, 4)])  # 5, 7 and 8 held
async def test_a_refused_probe_keeps_the_limit_it_probed_above_and_holds_probing(
    stores: list[PaceStore], beneath: int, probe_slots: int
) -> None:
    """Microsoft refused the one call above the limit; the calls beneath ran. The limit stays at 4 for
    every process, whatever happens to be held when the refusal is told (halving what was held left an
    app at 2 or 3 for the hold's hour, by chance: 5 held -> 2), and a hold stops the next probe."""
    first, second = pacer(stores[0]), pacer(stores[1])
    inside = await first.acquire(BACKGROUND, Demand(outlook=beneath), deadline=soon())
    assert inside is not None
    await asyncio.sleep(0.002)
    if beneath < 4:  # another caller holds the rest of the limit
        rest = await first.acquire(BACKGROUND, Demand(outlook=4 - beneath), deadline=soon())
        assert rest is not None
        assert not rest.probe
        await asyncio.sleep(0.002)
    probe = await first.acquire(BACKGROUND, Demand(outlook=probe_slots), deadline=soon())
    assert probe is not None
    assert probe.probe
    assert probe.limit == 4
    # What graph.py tells of a refused probe, before its release.
    await first.pushback(
        SCOPE, "outlook", retry_after=None, pressure=None, throttled=1, sent_under=probe.limit, probe=True
    )
    await done(first, probe, proven=False)
    assert await limit_of(stores[1]) == (4, True)
    # The hold: 4 in flight in the other process, and a fifth is no probe.
    if beneath < 4:
        await done(first, rest)
    await done(first, inside)
    (held,) = await hold(second, 1)
    assert await second.acquire(BACKGROUND, Demand(outlook=1), deadline=soon(0.3)) is None
    await done(second, held, proven=True)
    assert await limit_of(stores[0]) == (4, True)
    # An ordinary 429 under that limit still halves what is in flight: 4 held -> 2.
    (throttled,) = await hold(first, 1)
    await first.pushback(
        SCOPE, "outlook", retry_after=None, pressure=None, throttled=1, sent_under=throttled.limit
    )
    await done(first, throttled)
    assert await limit_of(stores[0]) == (2, True)


async def test_a_probe_proves_nothing_unless_the_calls_beneath_it_were_at_microsoft_all_along(
    stores: list[PaceStore],
) -> None:
    """Microsoft lets a probe through when fewer calls than the limit were there when it arrived: only
    this process's calls sent before the probe, still out at the middle of its flight and answered
    without pushback, witness that it ran above the limit, whatever slots are held. Several rounds, each
    a way the witnesses can be missing."""
    probes = Probes()
    first, second = (pacer(store, probes) for store in stores)
    for _ in range(3):
        # The calls beneath were answered as the probe went out: they had ended at Microsoft.
        inside, probe = await hold(first, 2)
        assert probe.probe
        inside.flight.answered = probe.flight.sent
        await done(first, probe, proven=True)
        await done(first, inside, proven=True)
        assert await limit_of(stores[1]) == (4, False)
        # Taken before the probe but sent after it (its request waited for a connection, slots held):
        # Microsoft had not seen it when it let the probe in. 64 connections for 50 apps did that in a
        # bench run, and 10 apps went from 4 to 8 on such witnesses.
        inside = await first.acquire(BACKGROUND, Demand(outlook=4), deadline=soon())
        assert inside is not None
        (probe,) = await hold(first, 1)
        assert probe.probe
        sent(inside)
        await done(first, probe, proven=True)
        await done(first, inside, proven=True)
        assert await limit_of(stores[0]) == (4, False)
        # The calls beneath in flight in another process: not seen here, so no witness.
        (inside,) = await hold(second, 1)
        (probe,) = await hold(first, 1)
        assert probe.probe
        await done(first, probe, proven=True)
        await done(second, inside, proven=True)
        assert await limit_of(stores[0]) == (4, False)
        # The calls beneath were at Microsoft all along but came back with a 429 (Microsoft ran fewer
        # of them than their slots: a bench run raised an app from 4 to 8 on such a witness).
        inside, probe = await hold(first, 2)
        await done(first, probe, proven=True)
        await done(first, inside, proven=False)
        assert await limit_of(stores[0]) == (4, False)
        # Under a limit of 4 a probe of 1 slot needs all 4 calls beneath it: 3 in flight is not enough.
        inside = await hold(first, 4, slots=1)
        (probe,) = await hold(first, 1, slots=1)
        assert probe.probe
        inside[0].flight.answered = probe.flight.sent
        await done(first, probe, proven=True)
        for permit in inside:
            await done(first, permit, proven=True)
        assert await limit_of(stores[1]) == (4, False)
    assert probes.outcomes == ["unproven"] * 15
    # Calls of the same length sent just before it, answered just before it, witness it: they were at
    # Microsoft when it got there (their answers are in well after the middle of its flight).
    inside, probe = await hold(first, 2)
    await asyncio.sleep(0.05)
    await done(first, inside, proven=True)
    await asyncio.sleep(0.002)
    await done(first, probe, proven=True)
    assert await limit_of(stores[1]) == (8, False)
    assert probes.outcomes[-1] == "raised"
    # Back to 4 with no hold (a refused probe's step, with no hold time), as before the last probe.
    await stores[0].pushback(
        KEY, pause=0, empty=False, slow_for=0, halve=True, hold_for=0, sent_under=4, probe=True
    )
    assert (await limit_of(stores[0]))[0] == 4
    # A witness answered after the probe proves it though its release ran first.
    inside, probe = await hold(first, 2)
    probe.flight.answered = time.monotonic()
    await done(first, inside, proven=True)
    await done(first, probe, proven=True)
    assert await limit_of(stores[1]) == (8, False)
    assert probes.outcomes[-1] == "raised"


async def test_a_429_while_a_probe_was_at_microsoft_is_the_probe_s_refusal(stores: list[PaceStore]) -> None:
    """Microsoft admits by arrival, and which call arrives last is not the order the slots were taken in:
    with a probe there, a call within the limit may be the one refused. Its 429 then keeps the limit and
    holds probing, as the probe's own would (halving what was held left apps at 2 in bench runs)."""
    paced = pacer(stores[0])
    for _ in range(3):
        (first,) = await hold(paced, 1, slots=2)
        second, third = await hold(paced, 2, slots=1)
        first.flight.answered = time.monotonic()  # answered before the probe was sent
        (probe,) = await hold(paced, 1, slots=1)
        assert [permit.probe for permit in (first, second, third, probe)] == [False, False, False, True]
        assert not paced.probe_beside(first)
        second.flight.answered = time.monotonic()  # at Microsoft while the probe was
        assert paced.probe_beside(second)
        assert not paced.probe_beside(probe)  # no other probe
        # The probe's release may come first (it was answered): the calls beside it still tell.
        await done(paced, probe, proven=True)
        await done(paced, second)
        third.flight.answered = time.monotonic()
        assert paced.probe_beside(third)
        (later,) = await hold(paced, 1, slots=1)
        assert not later.probe
        assert not paced.probe_beside(later)  # sent after the probe was answered
        for permit in (later, third, first):
            await done(paced, permit)
        assert (paced._flying, paced._ended) == ({}, {})  # nothing kept once all is over
    # What graph.py tells for that 429: a refused probe.
    inside, probe = await hold(paced, 2)
    assert paced.probe_beside(inside)
    await paced.pushback(
        SCOPE, "outlook", retry_after=None, pressure=None, throttled=1, sent_under=inside.limit, probe=True
    )
    await done(paced, inside)
    await done(paced, probe, proven=True)
    assert await limit_of(stores[0]) == (4, True)


async def test_a_process_s_slot_takes_reach_the_store_in_the_order_asked(stores: list[PaceStore]) -> None:
    """40 takes asked for at once get the slots in the order asked (lowest first: a pool of Redis
    connections once gave them out of order); several rounds."""
    store = stores[0]
    key = budget_key("outlook", PaceScope("ordered-app", SCOPE.tenant_id))
    await store.seed(key, capacity=1.0, slots=40, slot_limit=40)
    for _ in range(3):
        taken = await asyncio.gather(*(take(store, key, f"h{i}", max_slots=40) for i in range(40)))
        assert [t.slots for t in taken] == [(i,) for i in range(40)]
        await asyncio.gather(
            *(store.release(key, holder=f"h{i}", raise_to=None, max_slots=40) for i in range(40))
        )


async def test_a_process_s_releases_reach_the_store_before_the_takes_queued_ahead_of_them(
    stores: list[PaceStore],
) -> None:
    """Every slot held, then 10 takes and, after them, the 10 releases asked for at once: the first take
    has the connection and finds nothing, the releases go next, and the 9 takes behind them find the
    slots free (in the order asked, every take would have found nothing). Several rounds."""
    store = stores[0]
    key = budget_key("outlook", PaceScope("releases-first-app", SCOPE.tenant_id))
    await store.seed(key, capacity=1.0, slots=10, slot_limit=10)
    holders = [f"held{i}" for i in range(10)]
    for holder in holders:
        assert (await take(store, key, holder)).slots
    for round_ in range(3):
        takers = [f"r{round_}-{i}" for i in range(10)]
        results = await asyncio.gather(
            *(take(store, key, taker) for taker in takers),
            *(store.release(key, holder=holder, raise_to=None, max_slots=10) for holder in holders),
        )
        taken = results[:10]
        assert not taken[0].slots
        assert [len(t.slots) for t in taken[1:]] == [1] * 9
        assert sorted(slot for t in taken for slot in t.slots) == list(range(9))
        holders = [taker for taker, t in zip(takers, taken, strict=True) if t.slots]
        assert (await take(store, key, f"r{round_}-last")).slots == (9,)
        holders.append(f"r{round_}-last")


async def test_a_429_halves_what_is_in_flight_and_holds_probing(stores: list[PaceStore]) -> None:
    first, second = pacer(stores[0]), pacer(stores[1])
    inside, probe = await hold(first, 2)
    await done(first, probe, proven=True)
    await done(first, inside, proven=True)
    assert await limit_of(stores[0]) == (8, False)
    permits = await hold(first, 2)  # 8 in flight, under the limit
    # The pacer is told before the throttled request's release (graph.py): 8 held -> 4.
    await first.pushback(SCOPE, "outlook", retry_after=None, pressure=None, throttled=1)
    for permit in permits:
        await done(first, permit, proven=False)
    assert await limit_of(stores[1]) == (4, True)
    # The hold: 4 in flight, and a fifth is not let through as a probe, in either process.
    (held,) = await hold(second, 1)
    assert await first.acquire(BACKGROUND, Demand(outlook=1), deadline=soon(0.3)) is None
    # A proven release during the hold does not raise it either.
    await done(second, held, proven=True)
    assert await limit_of(stores[0]) == (4, True)
    # Halving again with 3 in flight -> 1; never below 1.
    three = [await second.acquire(BACKGROUND, Demand(outlook=1), deadline=soon()) for _ in range(3)]
    await second.pushback(SCOPE, "outlook", retry_after=None, pressure=None, throttled=1)
    assert await limit_of(stores[0]) == (1, True)
    for permit in three:
        assert permit is not None
        await done(second, permit)
    (one,) = await hold(first, 1, slots=1)
    await first.pushback(SCOPE, "outlook", retry_after=None, pressure=None, throttled=1)
    assert await limit_of(stores[0]) == (1, True)
    await done(first, one)


async def test_probing_comes_back_when_the_hold_runs_out(stores: list[PaceStore]) -> None:
    paced = pacer(stores[0], outlook_hold_seconds=0.5)
    (inside,) = await hold(paced, 1)
    await paced.pushback(SCOPE, "outlook", retry_after=None, pressure=None, throttled=1)
    await done(paced, inside)
    assert await limit_of(stores[0]) == (2, True)
    await asyncio.sleep(0.7)
    assert await limit_of(stores[0]) == (2, False)
    first, probe = await hold(paced, 2, slots=2)
    assert probe.probe
    assert probe.slots == (2, 3)
    await done(paced, probe, proven=True)
    await done(paced, first, proven=True)
    assert await limit_of(stores[0]) == (4, False)


async def test_the_limit_never_passes_its_maximum(stores: list[PaceStore]) -> None:
    paced = pacer(stores[0], outlook_max_concurrency=6)
    for _ in range(3):
        permits = [
            await paced.acquire(BACKGROUND, Demand(outlook=wanted), deadline=soon(0.3))
            for wanted in (4, 2, 2)
        ]
        got = [sent(permit) for permit in permits if permit is not None]
        assert sum(len(permit.slots) for permit in got) <= 6
        assert all(max(permit.slots) < 6 for permit in got)
        for permit in reversed(got):  # a probe is answered while the calls beneath it are in flight
            await done(paced, permit, proven=True)
    assert (await limit_of(stores[0]))[0] == 6


async def test_two_processes_probing_at_once_never_share_a_slot(stores: list[PaceStore]) -> None:
    """Several rounds of 12 callers in two processes, each holding what it gets for a moment: no slot is
    ever held twice and nothing above the maximum, while probes run above the limit."""
    pacers = [pacer(store) for store in stores]
    holding: dict[int, str] = {}
    clashes: list[int] = []
    probed: list[StorePacer] = []

    async def worker(paced: StorePacer, rounds: int) -> None:
        for _ in range(rounds):
            permit = await paced.acquire(BACKGROUND, Demand(outlook=2), deadline=soon(10))
            assert permit is not None
            assert permit.lease is not None
            sent(permit)
            if permit.probe:
                probed.append(paced)
            for slot in permit.slots:
                if slot in holding:
                    clashes.append(slot)
                holding[slot] = permit.lease
            # A probe is answered before the calls beneath it, which witness it (pacer._witnessed).
            await asyncio.sleep(0.002 if permit.probe else 0.02)
            for slot in permit.slots:
                holding.pop(slot, None)
            await done(paced, permit, proven=True)

    await asyncio.gather(*(worker(pacers[index % 2], 8) for index in range(12)))
    assert clashes == []
    # Probes ran (in which process is chance: once one process's probes raise the limit to the maximum,
    # nobody probes any more).
    assert probed
    # Whether the limit grows here is chance: a probe's witnesses are its own process's calls (a process
    # does not see when another's requests were on the wire), so it grows only when one process holds
    # every slot beneath a probe. Growth itself: the tests above, and the next one's cap.
    assert 4 <= (await limit_of(stores[0]))[0] <= 12


async def test_the_budgets_live_in_the_database_unless_redis_is_configured(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'unused.db'}")
    try:
        default = build_pacer(Settings(), engine, observer=NoPaceObserver())
        assert isinstance(default.store, DatabaseStore)
        await default.aclose()
        on_redis = build_pacer(
            Settings(graph_pacing_store="redis", redis_url=REDIS_URL, redis_timeout_seconds=PATIENT_SECONDS),
            engine,
            observer=NoPaceObserver(),
        )
        assert isinstance(on_redis.store, RedisPaceStore)
        pool = on_redis.store._lanes[False].client.connection_pool  # M365CONNECT_REDIS_TIMEOUT_SECONDS:
        assert pool.connection_kwargs["socket_timeout"] == PATIENT_SECONDS
        scope = PaceScope(f"app-{uuid.uuid4().hex}", "tenant", interactive=False)
        permit = await on_redis.acquire(scope, Demand(units=1, outlook=2), deadline=soon())
        assert permit is not None
        assert permit.slots == (0, 1)
        await done(on_redis, permit, proven=True)
        await on_redis.aclose()
        async with redis_admin() as client:
            keys = await delete_keys(client, f"m365connect:pace:*{scope.app_id}*")
        assert keys == [
            f"m365connect:pace:directory/{scope.app_id}/tenant",
            f"m365connect:pace:outlook/{scope.app_id}",
            f"m365connect:pace:outlook/{scope.app_id}:slots",
        ], keys
    finally:
        await engine.dispose()


async def test_a_budget_that_disappears_is_created_again(stores: list[PaceStore]) -> None:
    """A Redis restart (CI's keeps nothing) or an idle budget's expiry removes it under a running process:
    its next calls create it again rather than wait for a budget that is not there."""
    paced = pacer(stores[0])
    for demand in (Demand(units=1), Demand(outlook=2)):
        permit = await paced.acquire(SCOPE, demand, deadline=soon())
        assert permit is not None
        await done(paced, permit)
    store = stores[0]
    if isinstance(store, DatabaseStore):
        async with store._connected(interactive=False) as connection:
            await connection.execute(text("DELETE FROM graph_pace_budgets"))
            await connection.execute(text("DELETE FROM graph_pace_slots"))
    else:
        assert isinstance(store, RedisPaceStore)
        async with redis_admin() as client:
            assert len(await delete_keys(client, f"{store.prefix}*")) == 3
    assert await store.state(KEY, interactive_seconds=None) is None
    for demand in (Demand(units=1), Demand(outlook=2)):
        permit = await paced.acquire(SCOPE, demand, deadline=soon(2))
        assert permit is not None, demand
        await done(paced, permit)
    assert await limit_of(store) == (4, False)


async def test_under_a_limit_below_its_demand_a_caller_gets_what_the_limit_allows(
    stores: list[PaceStore],
) -> None:
    """After a 429 halved the limit to 2, an envelope that would run 4 Outlook calls takes 2 slots (and
    carries 2 items, graph.py) instead of waiting for 4 that the budget will not give for an hour."""
    first, second = pacer(stores[0]), pacer(stores[1])
    (inside,) = await hold(first, 1)
    await first.pushback(SCOPE, "outlook", retry_after=None, pressure=None, throttled=1)
    await done(first, inside)
    assert await limit_of(stores[0]) == (2, True)
    for paced, scope in ((first, BACKGROUND), (second, SCOPE), (second, BACKGROUND)):
        permit = await paced.acquire(scope, Demand(outlook=4), deadline=soon(2))
        assert permit is not None, scope
        assert permit.slots == (0, 1)
        assert not permit.probe
        # The budget is full: nobody gets a third slot while these two are held.
        assert await second.acquire(BACKGROUND, Demand(outlook=1), deadline=soon(0.2)) is None
        await done(paced, permit, proven=True)
    assert await limit_of(stores[0]) == (2, True)


async def test_a_429_halves_once_per_event(stores: list[PaceStore]) -> None:
    """Two requests sent under a limit of 8 are both refused: the first 429 halves to 4, the second (sent
    before that halving) does not halve again; a request sent under the new limit does."""
    paced = pacer(stores[0])
    inside, probe = await hold(paced, 2)
    await done(paced, probe, proven=True)
    await done(paced, inside, proven=True)
    first, second = await hold(paced, 2)
    assert (first.limit, second.limit) == (8, 8)
    await paced.pushback(
        SCOPE, "outlook", retry_after=None, pressure=None, throttled=1, sent_under=first.limit
    )
    await done(paced, first)
    assert await limit_of(stores[0]) == (4, True)
    await paced.pushback(
        SCOPE, "outlook", retry_after=None, pressure=None, throttled=1, sent_under=second.limit
    )
    await done(paced, second)
    assert await limit_of(stores[0]) == (4, True)
    later = await paced.acquire(BACKGROUND, Demand(outlook=4), deadline=soon())
    assert later is not None
    assert later.limit == 4
    await paced.pushback(
        SCOPE, "outlook", retry_after=None, pressure=None, throttled=1, sent_under=later.limit
    )
    await done(paced, later)
    assert await limit_of(stores[0]) == (2, True)
