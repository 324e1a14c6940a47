"""The Graph budgets shared through the database (pacing/pacer.py), on both databases: a bucket that two
connections and two processes never overspend, slots that a killed process gives back when their lease
runs out, a 429's pause and a slow-down seen by another process, an interactive caller served before the
background callers queued ahead of it, and a pacer that admits at once when its store fails."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from m365connect.db.engine import create_engine
from m365connect.microsoft.pacing import Demand, PaceScope, Permit
from m365connect.pacing.pacer import DatabasePacer, StorePacer, budget_key
from m365connect.pacing.repository import DatabaseStore, PaceRepository
from tests.pacing.support import (
    BACKGROUND,
    SCOPE,
    UNITS,
    WINDOW,
    interactive_steps_overtake,
    policy,
    within_budget,
)
from tests.processes import clean_env, stop

ROOT = Path(__file__).resolve().parents[2]
RATE = UNITS / WINDOW


_OPEN: list[DatabasePacer] = []


def pacer_on(engine: AsyncEngine, **changes: Any) -> DatabasePacer:
    """A pacer on `engine` with the tests' small budget; closed when its `engines` block ends."""
    made = DatabasePacer(engine, policy(**changes))
    _OPEN.append(made)
    return made


@asynccontextmanager
async def engines(url: str, count: int = 2) -> AsyncIterator[list[AsyncEngine]]:
    """`count` engines on one database: separate pools, as separate processes have."""
    built = [create_engine(url) for _ in range(count)]
    try:
        yield built
    finally:
        while _OPEN:
            await _OPEN.pop().aclose()
        for engine in built:
            await engine.dispose()


async def until(condition: Callable[[], Awaitable[bool]], *, seconds: float = 10.0) -> None:
    """Poll `condition` every 10 ms until it holds (fails the test after `seconds`)."""
    deadline = time.monotonic() + seconds
    while not await condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def child_process(*args: str) -> subprocess.Popen[bytes]:
    """`python -m tests.pacing.child ARGS`, its output piped to this test."""
    command = [sys.executable, "-m", "tests.pacing.child", *args]
    return subprocess.Popen(command, cwd=ROOT, env=clean_env(PYTHONPATH=str(ROOT)), stdout=subprocess.PIPE)


async def two_children(*args: str) -> list[str]:
    """Run two `child_process(*args)` at once to their end (both must succeed); their outputs."""
    children = [child_process(*args) for _ in range(2)]
    try:
        outputs = [await asyncio.to_thread(child.communicate, timeout=120) for child in children]
    finally:
        stop(children)
    assert [child.returncode for child in children] == [0, 0]
    return [out.decode() for out, _ in outputs]


def soon(seconds: float = 10.0) -> float:
    return time.monotonic() + seconds


async def test_two_connections_never_spend_more_than_the_bucket(database_url: str) -> None:
    times: list[float] = []
    async with engines(database_url) as (first, second):
        pacers = [pacer_on(first), pacer_on(second)]

        async def take(pacer: DatabasePacer, count: int) -> None:
            for _ in range(count):
                assert await pacer.acquire(SCOPE, Demand(units=1), deadline=soon()) is not None
                times.append(time.time())

        start = time.time()
        await asyncio.gather(*(take(pacer, 15) for pacer in pacers))
    # 30 units from a bucket of 10 that refills 20 a second: never ahead of it, and not faster than 1 s.
    assert within_budget(times, start=start, capacity=UNITS, rate=RATE) == []
    assert max(times) - start >= (30 - UNITS) / RATE * 0.9


async def test_two_processes_share_one_bucket(database_url: str) -> None:
    outputs = await two_children(database_url, "units", "15")
    times = [float(line) for out in outputs for line in out.split()]
    assert len(times) == 30
    # The first admission follows the bucket's creation by one statement.
    start = min(times) - 0.05
    assert within_budget(times, start=start, capacity=UNITS, rate=RATE) == []
    assert max(times) - min(times) >= (30 - UNITS) / RATE * 0.9


async def test_two_processes_probing_at_once_never_hold_a_slot_twice(database_url: str) -> None:
    """Two real processes, 6 callers each, 8 rounds, under the learnt limit: no slot is held by two permits
    at once (each interval runs from after the take to before the release, so it lies inside the real
    hold) and none above the maximum, while probes run above the limit."""
    outputs = await two_children(database_url, "probe", "8")
    held: dict[int, list[tuple[float, float]]] = {}
    for out in outputs:
        for line in out.splitlines():
            slot, start, end = line.split()
            held.setdefault(int(slot), []).append((float(start), float(end)))
    assert sum(len(spans) for spans in held.values()) >= 2 * 6 * 8  # a permit holds 1 or 2 slots
    assert max(held) < 12
    # Probes ran above the starting limit of 4. Whether they were proven is chance here: a probe's
    # witnesses are its own process's calls (pacer._witnessed), and these processes share the slots.
    assert max(held) >= 4
    for slot, spans in held.items():
        spans.sort()
        clashes = [(a, b) for a, b in pairwise(spans) if b[0] < a[1]]
        assert clashes == [], f"slot {slot} held twice at once: {clashes[:3]}"


async def test_an_interactive_step_does_not_queue_behind_background_steps(database_url: str) -> None:
    """The store serves interactive callers on a connection of their own (tests/pacing/support.py)."""
    async with engines(database_url, 1) as (engine,):
        store = DatabaseStore(engine)
        try:
            await interactive_steps_overtake(store, budget_key("outlook", SCOPE))
        finally:
            await store.aclose()


class LaneRecorder:
    """A store that records, for each step, whether it was asked as interactive, then does it."""

    def __init__(self, store: DatabaseStore) -> None:
        self.store = store
        self.lanes: list[tuple[str, bool]] = []

    def __getattr__(self, name: str) -> Any:
        step = getattr(self.store, name)
        if name == "aclose":
            return step

        async def recorded(*args: Any, **kwargs: Any) -> Any:
            if name == "state":
                self.lanes.append((name, kwargs["interactive_seconds"] is not None))
            else:
                self.lanes.append((name, kwargs.get("interactive", False)))
            return await step(*args, **kwargs)

        return recorded


@pytest.mark.parametrize("interactive", [True, False])
async def test_the_pacer_asks_the_store_in_its_callers_lane(database_url: str, interactive: bool) -> None:
    """Every step of a caller's permit (seed, take, stamp, pushback, release) goes in the caller's lane."""
    scope = PaceScope(SCOPE.app_id, SCOPE.tenant_id, interactive=interactive)
    async with engines(database_url, 1) as (engine,):
        recorder = LaneRecorder(DatabaseStore(engine))
        pacer = StorePacer(recorder, policy())  # type: ignore[arg-type]
        try:
            permit = await pacer.acquire(scope, Demand(units=1, outlook=2), deadline=soon())
            assert permit is not None
            await pacer.pushback(scope, "outlook", retry_after=1.0, pressure=None, throttled=1, sent_under=4)
            await pacer.release(permit)
        finally:
            await pacer.aclose()
    steps = {name for name, _ in recorder.lanes}
    assert {"seed", "take_units", "take_slots", "pushback", "release"} <= steps
    assert [lane for _, lane in recorder.lanes] == [interactive] * len(recorder.lanes)


async def test_slots_of_a_killed_process_come_back_after_their_lease(database_url: str) -> None:
    lease = 3.0
    child = child_process(database_url, "hold", str(lease))
    try:
        assert child.stdout is not None
        assert (await asyncio.wait_for(asyncio.to_thread(child.stdout.readline), 60)).strip() == b"held"
        killed = time.monotonic()
        child.kill()
        child.wait()
    finally:
        stop([child])
        if child.stdout is not None:
            child.stdout.close()
    async with engines(database_url, 1) as (engine,):
        pacer = pacer_on(engine)
        # The dead process's slots are still leased...
        assert await pacer.acquire(SCOPE, Demand(outlook=1), deadline=time.monotonic() + 0.2) is None
        # ...until the lease runs out, not forever.
        permit = await pacer.acquire(SCOPE, Demand(outlook=4), deadline=killed + lease + 10)
        waited = time.monotonic() - killed
        assert permit is not None
        assert permit.lease is not None
        assert lease - 1.0 <= waited <= lease + 5.0
        await pacer.release(permit)


async def test_a_429_pauses_the_budget_for_another_process(database_url: str) -> None:
    async with engines(database_url) as (first, second):
        told, other = pacer_on(first), pacer_on(second)
        # Both budgets in use, so that their rows exist.
        assert await other.acquire(SCOPE, Demand(units=1), deadline=soon()) is not None
        slot = await other.acquire(SCOPE, Demand(outlook=1), deadline=soon())
        assert slot is not None
        await other.release(slot)
        for kind in ("directory", "outlook"):
            await told.pushback(SCOPE, kind, retry_after=0.6, pressure=None, throttled=1)
        started = time.monotonic()
        # Not before the Retry-After: a deadline short of it gives up at once.
        assert await other.acquire(SCOPE, Demand(units=1), deadline=started + 0.2) is None
        assert await other.acquire(SCOPE, Demand(outlook=1), deadline=started + 0.2) is None
        units = await other.acquire(SCOPE, Demand(units=1), deadline=soon())
        after_units = time.monotonic() - started
        slot = await other.acquire(SCOPE, Demand(outlook=1), deadline=soon())
        assert units is not None
        assert slot is not None
        assert after_units >= 0.5
        await other.release(slot)


async def test_a_throttle_percentage_above_the_threshold_slows_the_bucket(database_url: str) -> None:
    async with engines(database_url) as (first, second):
        told, other = pacer_on(first), pacer_on(second)
        assert await other.acquire(SCOPE, Demand(units=UNITS), deadline=soon()) is not None  # empty it
        await told.pushback(SCOPE, "directory", retry_after=None, pressure=0.9)
        started = time.monotonic()
        assert await other.acquire(SCOPE, Demand(units=UNITS), deadline=soon()) is not None
        # A full bucket at the normal rate takes WINDOW (0.5 s); at the slow factor (0.5), twice that.
        assert time.monotonic() - started >= 2 * WINDOW * 0.8


async def test_an_interactive_caller_overtakes_queued_background_callers(database_url: str) -> None:
    key = budget_key("outlook", SCOPE)
    async with engines(database_url) as (first, second):
        # The interactive caller polls every 0.2 s, the background ones every 10 ms and at once when their
        # own process frees a slot: only its stamp (0.5 s fresh) can make it first.
        background = pacer_on(first)
        interactive = pacer_on(second, poll_seconds=0.2)
        held = [await background.acquire(BACKGROUND, Demand(outlook=1), deadline=soon()) for _ in range(4)]
        order: list[str] = []

        async def wait(pacer: DatabasePacer, scope: PaceScope, name: str) -> Permit | None:
            permit = await pacer.acquire(scope, Demand(outlook=1), deadline=soon(20))
            order.append(name)
            return permit

        queued = [asyncio.create_task(wait(background, BACKGROUND, f"background {i}")) for i in range(3)]
        repository = PaceRepository(first.dialect.name)

        async def stamped() -> bool:
            async with first.connect() as connection:
                state = await repository.state(connection, key=key, interactive_seconds=None)
            return state is not None and state.interactive_until > state.now

        await asyncio.sleep(0)  # the background callers are in line before the interactive one starts
        first_in_line = asyncio.create_task(wait(interactive, SCOPE, "interactive"))
        await until(stamped)
        for permit in held:  # one slot at a time
            assert permit is not None
            await background.release(permit)
            count = len(order)
            await until(lambda count=count: _more(order, count))  # type: ignore[misc]
        permits = await asyncio.gather(first_in_line, *queued)
        for permit in permits:
            assert permit is not None
            await (interactive if permit.scope.interactive else background).release(permit)
    assert order[0] == "interactive", order
    assert sorted(order) == ["background 0", "background 1", "background 2", "interactive"]


async def _more(order: list[str], count: int) -> bool:
    return len(order) > count


SLOT_TAKE, UNIT_TAKE = "WITH chosen AS MATERIALIZED", "UPDATE graph_pace_budgets SET tokens"


class Asks:
    """Counts the statements of one kind (those starting with `prefix`) run on an engine."""

    def __init__(self, engine: AsyncEngine, prefix: str) -> None:
        self.asks = 0
        self._engine = engine
        self._prefix = prefix

    def _count(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        self.asks += statement.startswith(self._prefix)

    def __enter__(self) -> Asks:
        event.listen(self._engine.sync_engine, "before_cursor_execute", self._count)
        return self

    def __exit__(self, *exc: object) -> None:
        event.remove(self._engine.sync_engine, "before_cursor_execute", self._count)


async def test_callers_waiting_at_once_for_directory_units_share_one_statement(database_url: str) -> None:
    """Ten lookup envelopes of one budget asking at once cost one statement, which takes all their units
    (one each cost ten, one at a time on the process's one connection)."""
    async with engines(database_url, 1) as (engine,):
        pacer = pacer_on(engine)
        for _round in range(3):
            with Asks(engine, UNIT_TAKE) as takes:
                permits = await asyncio.gather(
                    *(pacer.acquire(BACKGROUND, Demand(units=1), deadline=soon()) for _ in range(UNITS))
                )
            assert all(permit is not None for permit in permits)
            assert takes.asks == 1
            async with engine.connect() as connection:
                key = budget_key("directory", BACKGROUND)
                state = await PaceRepository(engine.dialect.name).state(
                    connection, key=key, interactive_seconds=None
                )
            assert state is not None
            assert state.tokens < 1.0  # all ten units were taken from the bucket of ten
            await asyncio.sleep(WINDOW * 1.1)  # full again


async def test_two_pacers_of_many_waiting_callers_never_overspend_the_bucket(database_url: str) -> None:
    """Callers taken together still never take more than the bucket holds: 2 x 20 callers at once of
    1-3 units each, on two engines (separate pools, as separate processes have), in 3 rounds."""
    async with engines(database_url) as (first, second):
        pacers = [pacer_on(first), pacer_on(second)]
        admitted: list[tuple[float, int]] = []

        async def take(pacer: DatabasePacer, units: int) -> None:
            assert await pacer.acquire(BACKGROUND, Demand(units=units), deadline=soon()) is not None
            admitted.append((time.time(), units))

        for _round in range(3):
            admitted.clear()
            start = time.time()
            await asyncio.gather(*(take(pacer, 1 + i % 3) for pacer in pacers for i in range(20)))
            # One entry per unit: within_budget counts admissions of one unit each.
            times = [at for at, units in admitted for _ in range(units)]
            assert within_budget(times, start=start, capacity=UNITS, rate=RATE) == []
            assert max(times) - start >= (len(times) - UNITS) / RATE * 0.9
            await asyncio.sleep(WINDOW * 1.1)


async def test_a_waiting_caller_whose_deadline_comes_first_is_told_at_once(database_url: str) -> None:
    """The units come back in 0.5 s and the caller has 0.3: it is told at once, not at its deadline, and
    the callers behind it, with time enough, still get theirs."""
    async with engines(database_url, 1) as (engine,):
        pacer = pacer_on(engine)
        assert await pacer.acquire(BACKGROUND, Demand(units=UNITS), deadline=soon()) is not None
        started = time.monotonic()
        hurried = asyncio.create_task(pacer.acquire(BACKGROUND, Demand(units=UNITS), deadline=soon(0.3)))
        patient = asyncio.create_task(pacer.acquire(BACKGROUND, Demand(units=UNITS), deadline=soon()))
        assert await hurried is None
        assert time.monotonic() - started < 0.2
        assert await patient is not None
        assert time.monotonic() - started >= WINDOW * 0.8


async def test_a_caller_cancelled_while_waiting_leaves_the_others_served(database_url: str) -> None:
    async with engines(database_url, 1) as (engine,):
        pacer = pacer_on(engine)
        assert await pacer.acquire(BACKGROUND, Demand(units=UNITS), deadline=soon()) is not None
        callers = [
            asyncio.create_task(pacer.acquire(BACKGROUND, Demand(units=3), deadline=soon())) for _ in range(3)
        ]
        await asyncio.sleep(0.05)
        callers[1].cancel()
        first, third = await callers[0], await callers[2]
        assert first is not None
        assert third is not None
        assert callers[1].cancelled()


async def test_a_pacer_whose_store_fails_admits_at_once(tmp_path: Path) -> None:
    # A database without the pacing tables: every statement fails; the calls go on unpaced.
    async with engines(f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}", 1) as (engine,):
        pacer = pacer_on(engine)
        started = time.monotonic()
        for _ in range(3):
            permit = await pacer.acquire(SCOPE, Demand(units=UNITS, outlook=4), deadline=soon())
            assert permit is not None
            assert permit.lease is None
            await pacer.release(permit)
        assert time.monotonic() - started < 2.0


async def test_callers_waiting_together_all_go_on_when_the_store_fails(tmp_path: Path) -> None:
    async with engines(f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}", 1) as (engine,):
        pacer = pacer_on(engine)
        started = time.monotonic()
        permits = await asyncio.gather(
            *(pacer.acquire(BACKGROUND, Demand(units=UNITS), deadline=soon()) for _ in range(5))
        )
        assert [permit is not None and permit.lease is None for permit in permits] == [True] * 5
        assert time.monotonic() - started < 2.0


async def waits_for_its_own_release(
    engine: AsyncEngine, pacer: DatabasePacer, held: Permit, need: Demand
) -> None:
    """A background caller asking for `need` while this process holds `held` asks the database nothing
    until `held` is released, then once."""
    with Asks(engine, SLOT_TAKE) as takes:
        waiting = asyncio.create_task(pacer.acquire(BACKGROUND, need, deadline=soon()))
        await asyncio.sleep(0.3)  # 30 polls of 10 ms, were it polling
        assert not waiting.done()
        assert takes.asks == 0
        await pacer.release(held)
        permit = await asyncio.wait_for(waiting, 5)
        assert permit is not None
        assert takes.asks == 1
        await pacer.release(permit)


async def test_a_background_caller_does_not_poll_for_slots_its_own_process_holds(database_url: str) -> None:
    """While this process holds an app's slots, a background caller waits for its release instead of
    asking the database every poll (each ask is a statement: at 50 apps it was a third of a worker's
    CPU); another process's slots are still polled for."""
    async with engines(database_url) as (engine, other):
        pacer = pacer_on(engine)
        held = await pacer.acquire(BACKGROUND, Demand(outlook=4), deadline=soon())
        assert held is not None
        await waits_for_its_own_release(engine, pacer, held, Demand(outlook=2))

        # Slots held by another process: the caller polls the database until they come back.
        foreign = await pacer_on(other).acquire(BACKGROUND, Demand(outlook=4), deadline=soon())
        assert foreign is not None
        with Asks(engine, SLOT_TAKE) as takes:
            waiting = asyncio.create_task(pacer.acquire(BACKGROUND, Demand(outlook=1), deadline=soon()))
            await until(lambda: _at_least(lambda: takes.asks, 3))
            assert not waiting.done()
            await _OPEN[-1].release(foreign)
            permit = await asyncio.wait_for(waiting, 5)
            assert permit is not None
            await pacer.release(permit)


async def _at_least(read: Callable[[], int], count: int) -> bool:
    return read() >= count


async def test_under_a_hold_a_background_caller_still_waits_for_its_own_process(database_url: str) -> None:
    """After a 429 (limit 4, probing held), the process's own 4 slots fill the budget: a background
    caller waits for their release rather than asking again and again for a probe the hold refuses."""
    async with engines(database_url, 1) as (engine,):
        pacer = pacer_on(engine, outlook_max_concurrency=12, outlook_hold_seconds=60.0)
        first = await pacer.acquire(BACKGROUND, Demand(outlook=4), deadline=soon())
        probe = await pacer.acquire(BACKGROUND, Demand(outlook=4), deadline=soon())
        assert first is not None
        assert probe is not None
        assert probe.probe
        await pacer.pushback(
            BACKGROUND, "outlook", retry_after=None, pressure=None, throttled=1, sent_under=4
        )
        await pacer.release(probe)
        await pacer.release(first)
        held = await pacer.acquire(BACKGROUND, Demand(outlook=4), deadline=soon())  # learns the hold
        assert held is not None
        again = await pacer.acquire(BACKGROUND, Demand(outlook=4), deadline=soon(0.3))
        assert again is None  # the hold: no probe above 4
        await pacer.release(held)
        held = await pacer.acquire(BACKGROUND, Demand(outlook=4), deadline=soon())
        assert held is not None
        await waits_for_its_own_release(engine, pacer, held, Demand(outlook=4))
