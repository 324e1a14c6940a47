"""The pacer's budgets in a real Redis (pacing/redis_store.py): a bucket that two clients and a second process
never overspend, slots held by one holder at a time (lowest first, all or none), probes that raise the
Outlook limit, a 429 that halves it and holds it, leases that run out, pauses, slow-downs, the interactive
stamp, and a Redis that does not answer."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from m365connect.pacing.redis_store import RedisPaceStore
from m365connect.pacing.store import StoreUnavailable, Taken
from tests.pacing.support import interactive_steps_overtake, within_budget
from tests.processes import clean_env
from tests.redis_support import PATIENT_SECONDS, REDIS_URL, delete_keys, redis_admin

ROOT = Path(__file__).resolve().parents[2]
KEY = "outlook/app"
CAP, RATE = 10.0, 20.0

# A second process taking units from the same bucket: waits for "go" on stdin, then runs ROUNDS rounds of 40
# concurrent takes and prints the wall-clock time of each admission.
CHILD = """
import asyncio, sys, time
from m365connect.pacing.redis_store import RedisPaceStore

async def take(store):
    took = await store.take_units("directory/a/t", cap=10.0, rate=20.0, slow=1.0, cost=1.0, interactive=False)
    return time.time() if took else None

async def main(url, prefix, rounds, timeout):
    store = RedisPaceStore.from_url(url, prefix=prefix, timeout=float(timeout))
    try:
        # Open the lane's connection now, so that the rounds overlap with the parent's.
        await asyncio.gather(*(store.state("directory/a/t", interactive_seconds=None) for _ in range(40)))
        sys.stdout.write("ready\\n"); sys.stdout.flush()
        await asyncio.to_thread(sys.stdin.readline)
        for _ in range(int(rounds)):
            for at in await asyncio.gather(*(take(store) for _ in range(40))):
                if at is not None:
                    sys.stdout.write(f"{at:.6f}\\n")
            await asyncio.sleep(0.01)
    finally:
        await store.aclose()

asyncio.run(main(*sys.argv[1:5]))
"""


@pytest.fixture
async def admin() -> AsyncIterator[aioredis.Redis]:
    """A plain client of the Redis on 127.0.0.1:6379 (.ci/run starts it), to read and clean the keys."""
    async with redis_admin() as client:
        yield client


@pytest.fixture
async def prefix(admin: aioredis.Redis) -> AsyncIterator[str]:
    """A key prefix of this test only; its keys are deleted afterwards."""
    made = f"m365connect-test:pace:{secrets.token_hex(6)}:"
    yield made
    await delete_keys(admin, f"{made}*")


@pytest.fixture
async def stores(prefix: str) -> AsyncIterator[tuple[RedisPaceStore, RedisPaceStore]]:
    """Two stores on connections of their own, as two processes have."""
    first = RedisPaceStore.from_url(REDIS_URL, prefix=prefix, timeout=PATIENT_SECONDS)
    second = RedisPaceStore.from_url(REDIS_URL, prefix=prefix, timeout=PATIENT_SECONDS)
    yield first, second
    await first.aclose()
    await second.aclose()


@pytest.fixture
def store(stores: tuple[RedisPaceStore, RedisPaceStore]) -> RedisPaceStore:
    return stores[0]


async def holders(admin: aioredis.Redis, prefix: str, key: str = KEY) -> dict[int, str | None]:
    """The slots as stored: slot -> holder (None when free)."""
    stored = await admin.hgetall(f"{prefix}{key}:slots")
    return {int(slot): str(value).split(" ", 1)[1] if value else None for slot, value in stored.items()}


async def take(
    store: RedisPaceStore,
    holder: str,
    n: int,
    *,
    lease: float = 30.0,
    max_slots: int = 8,
    interactive: bool = False,
) -> Taken:
    """take_slots on KEY."""
    return await store.take_slots(
        KEY, holder=holder, n=n, lease=lease, max_slots=max_slots, interactive=interactive
    )


async def units(
    store: RedisPaceStore,
    key: str = KEY,
    *,
    cost: float = 1.0,
    rate: float = RATE,
    slow: float = 1.0,
    interactive: bool = False,
) -> bool:
    """take_units from a bucket of CAP."""
    return await store.take_units(key, cap=CAP, rate=rate, slow=slow, cost=cost, interactive=interactive)


async def test_seed_is_idempotent_and_only_adds_missing_slots(
    store: RedisPaceStore, admin: aioredis.Redis, prefix: str
) -> None:
    await store.seed(KEY, capacity=CAP, slots=4, slot_limit=4)
    assert await units(store, rate=0.0, cost=0.123456789)  # a fraction survives the trip through Lua
    assert (await take(store, "a", 2)).slots == (0, 1)
    await store.seed(KEY, capacity=99.0, slots=6, slot_limit=9)
    state = await store.state(KEY, interactive_seconds=None)
    assert state is not None
    assert state.tokens == pytest.approx(CAP - 0.123456789, abs=1e-12)
    assert (state.slot_limit, state.hold_until, state.paused_until) == (4, 0.0, 0.0)
    assert 0 < state.now - state.at < 5
    assert await holders(admin, prefix) == {0: "a", 1: "a", 2: None, 3: None, 4: None, 5: None}
    for name in (f"{prefix}{KEY}", f"{prefix}{KEY}:slots"):
        assert 86_000 < await admin.ttl(name) <= 86_400  # idle budgets go away


async def test_a_budget_never_seeded_takes_nothing(
    store: RedisPaceStore, admin: aioredis.Redis, prefix: str
) -> None:
    assert await store.state(KEY, interactive_seconds=1.0) is None
    assert not await units(store)
    assert await take(store, "a", 1) == Taken(slots=(), slot_limit=0)
    await store.pushback(KEY, pause=1.0, empty=True, slow_for=1.0, halve=True, hold_for=1.0)
    await store.release(KEY, holder="a", raise_to=8, max_slots=8)
    assert [key async for key in admin.scan_iter(match=f"{prefix}*")] == []


async def test_two_clients_and_a_process_never_overspend_the_bucket(
    stores: tuple[RedisPaceStore, RedisPaceStore], prefix: str
) -> None:
    key, rounds = "directory/a/t", 20
    await stores[0].seed(key, capacity=CAP, slots=0, slot_limit=0)
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, REDIS_URL, prefix, str(rounds), str(PATIENT_SECONDS), cwd=ROOT,
        env=clean_env(),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert child.stdin is not None
    assert child.stdout is not None
    try:
        await asyncio.gather(*(stores[i % 2].state(key, interactive_seconds=None) for i in range(40)))
        assert await asyncio.wait_for(child.stdout.readline(), 30) == b"ready\n"
        start = time.time()  # the bucket is full (at most) here; nothing is taken before
        child.stdin.write(b"go\n")
        await child.stdin.drain()

        async def admitted(store: RedisPaceStore) -> float | None:
            return time.time() if await units(store, key) else None

        times: list[float] = []
        for _ in range(rounds):
            answers = await asyncio.gather(*(admitted(stores[i % 2]) for i in range(40)))
            times.extend(at for at in answers if at is not None)
            await asyncio.sleep(0.01)
        output, _ = await asyncio.wait_for(child.communicate(), 30)
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
    assert child.returncode == 0
    times.extend(float(line) for line in output.split())
    assert len(times) >= CAP  # the bucket was spent, so the bound below was tested
    assert within_budget(times, start=start, capacity=CAP, rate=RATE) == []


async def test_an_interactive_step_does_not_queue_behind_background_steps(store: RedisPaceStore) -> None:
    """Interactive callers have a connection of their own, as with the database store."""
    await interactive_steps_overtake(store, KEY)


async def test_a_step_cancelled_in_flight_leaves_its_lane_answering_the_right_steps(
    store: RedisPaceStore,
) -> None:
    """A lane is one connection: a step cancelled after it was sent must not leave its answer on the
    connection for the next step to read (redis-py drops the connection; the next step opens another).
    300 rounds, each cancelling a step of one budget at a different point, then reading another budget."""
    await store.seed(KEY, capacity=CAP, slots=8, slot_limit=8)
    await store.seed("outlook/other", capacity=CAP, slots=2, slot_limit=2)
    cancelled = 0
    for i in range(300):
        step = asyncio.create_task(store.state("outlook/other", interactive_seconds=None))
        await asyncio.sleep((0.0, 0.0, 0.00005, 0.0001, 0.0002)[i % 5])
        if not step.done():
            step.cancel()
            cancelled += 1
        with contextlib.suppress(asyncio.CancelledError):
            await step
        state = await store.state(KEY, interactive_seconds=None)
        assert state is not None
        assert state.slot_limit == 8, i
    assert cancelled > 0


async def test_slots_are_taken_lowest_first_and_all_or_none(
    store: RedisPaceStore, admin: aioredis.Redis, prefix: str
) -> None:
    await store.seed(KEY, capacity=CAP, slots=8, slot_limit=8)
    assert (await take(store, "a", 3)).slots == (0, 1, 2)
    assert (await take(store, "b", 2)).slots == (3, 4)
    await store.release(KEY, holder="a", raise_to=None, max_slots=8)
    assert await take(store, "c", 4) == Taken(slots=(0, 1, 2, 5), slot_limit=8)
    assert await take(store, "d", 3) == Taken(slots=(), slot_limit=8)  # two free: none taken
    assert "d" not in (await holders(admin, prefix)).values()
    assert (await take(store, "d", 2)).slots == (6, 7)
    assert not (await take(store, "e", 1)).slots


async def test_concurrent_takes_never_share_a_slot(
    stores: tuple[RedisPaceStore, RedisPaceStore], admin: aioredis.Redis, prefix: str
) -> None:
    await stores[0].seed(KEY, capacity=CAP, slots=8, slot_limit=8)
    for round_ in range(5):
        wanted = {f"r{round_}h{i}": 1 + i % 3 for i in range(30)}
        answers = await asyncio.gather(
            *(take(stores[i % 2], holder, n) for i, (holder, n) in enumerate(wanted.items()))
        )
        got = {holder: taken.slots for holder, taken in zip(wanted, answers, strict=True) if taken.slots}
        assert all(len(slots) == wanted[holder] for holder, slots in got.items())
        claimed = [slot for slots in got.values() for slot in slots]
        assert len(claimed) == len(set(claimed)) <= 8
        assert len(claimed) >= 6  # at most two slots can stay free when every take asks for 1 to 3
        stored = await holders(admin, prefix)
        assert {slot: holder for holder, slots in got.items() for slot in slots} == {
            slot: holder for slot, holder in stored.items() if holder is not None
        }
        for holder in got:
            await stores[round_ % 2].release(KEY, holder=holder, raise_to=None, max_slots=8)


async def test_a_probe_uses_slots_above_the_limit_and_its_release_raises_it(store: RedisPaceStore) -> None:
    await store.seed(KEY, capacity=CAP, slots=8, slot_limit=4)
    five = await take(store, "a", 5)  # below min(8, 4 + 5): slot 4 is a probe
    assert five == Taken(slots=(0, 1, 2, 3, 4), slot_limit=4)
    assert five.probe
    await store.release(KEY, holder="a", raise_to=None, max_slots=8)
    below = await take(store, "a", 4)
    assert below == Taken(slots=(0, 1, 2, 3), slot_limit=4)
    assert not below.probe
    probe = await take(store, "b", 4)
    assert probe == Taken(slots=(4, 5, 6, 7), slot_limit=4)
    assert probe.probe
    # Proven (the pacer judges that: pacer._proof), and the limit rises.
    assert await store.release(KEY, holder="b", raise_to=8, max_slots=8)
    state = await store.state(KEY, interactive_seconds=None)
    assert state is not None
    assert state.slot_limit == 8
    # Never above max_slots; a raise may come with any holder's release (the witness's that proved it).
    assert await store.release(KEY, holder="a", raise_to=12, max_slots=6)
    state = await store.state(KEY, interactive_seconds=None)
    assert state is not None
    assert state.slot_limit == 6


async def test_a_hold_blocks_probing_and_raising_until_it_passes(store: RedisPaceStore) -> None:
    await store.seed(KEY, capacity=CAP, slots=8, slot_limit=4)
    assert (await take(store, "a", 4)).slots == (0, 1, 2, 3)
    assert (await take(store, "b", 4)).probe
    await store.pushback(KEY, pause=0.0, empty=False, slow_for=0.0, halve=True, hold_for=0.6)
    assert not await store.release(KEY, holder="b", raise_to=8, max_slots=8)  # the hold runs: no raise
    state = await store.state(KEY, interactive_seconds=None)
    assert state is not None
    assert state.slot_limit == 4  # min(4, 8 // 2)
    assert not (await take(store, "c", 1)).slots  # 0..3 held, no probing above 4
    await store.release(KEY, holder="a", raise_to=None, max_slots=8)
    assert not (await take(store, "c", 5)).slots
    assert (await take(store, "c", 4)).slots == (0, 1, 2, 3)
    await asyncio.sleep(0.65)
    assert await take(store, "d", 1) == Taken(slots=(4,), slot_limit=4)
    assert await store.release(KEY, holder="d", raise_to=5, max_slots=8)
    state = await store.state(KEY, interactive_seconds=None)
    assert state is not None
    assert state.slot_limit == 5


async def test_halve_counts_the_slots_held_now(store: RedisPaceStore) -> None:
    async def halved(key: str, takes: list[tuple[int, float]], *, limit: int = 8) -> tuple[int, float]:
        """Seed `key`, take (n, lease) for one holder each, then push back with `halve` (a hold of 5 s)."""
        await store.seed(key, capacity=CAP, slots=8, slot_limit=limit)
        for i, (n, lease) in enumerate(takes):
            taken = await store.take_slots(
                key, holder=f"h{i}", n=n, lease=lease, max_slots=8, interactive=True
            )
            assert len(taken.slots) == n
        if any(lease < 1 for _, lease in takes):
            await asyncio.sleep(0.25)
        await store.pushback(key, pause=0.0, empty=False, slow_for=0.0, halve=True, hold_for=5.0)
        state = await store.state(key, interactive_seconds=None)
        assert state is not None
        return state.slot_limit, state.hold_until - state.now

    assert (await halved("outlook/eight", [(1, 30.0)] * 8))[0] == 4
    assert (await halved("outlook/three", [(1, 30.0)] * 3))[0] == 1
    assert (await halved("outlook/none", []))[0] == 1  # never below one
    # Leases that ran out are not held: 2 held, not 8.
    assert (await halved("outlook/expired", [(1, 0.1)] * 6 + [(1, 30.0)] * 2))[0] == 1
    limit, hold = await halved("outlook/low", [(6, 30.0)], limit=2)
    assert limit == 2  # 6 held, yet never above the limit it had
    assert 4.0 < hold <= 5.0
    before = await store.state("outlook/low", interactive_seconds=None)
    await store.pushback("outlook/low", pause=0.0, empty=False, slow_for=0.0, halve=True, hold_for=0.1)
    after = await store.state("outlook/low", interactive_seconds=None)
    assert before is not None
    assert after is not None
    assert after.hold_until == before.hold_until  # a shorter hold does not shorten it


async def test_a_lease_that_runs_out_frees_its_slot(
    store: RedisPaceStore, admin: aioredis.Redis, prefix: str
) -> None:
    await store.seed(KEY, capacity=CAP, slots=2, slot_limit=2)
    assert (await take(store, "a", 2, lease=0.5, max_slots=2)).slots == (0, 1)
    assert not (await take(store, "b", 1, max_slots=2)).slots
    await asyncio.sleep(0.55)
    assert (await take(store, "b", 1, max_slots=2)).slots == (0,)
    await store.release(KEY, holder="a", raise_to=None, max_slots=2)  # a's late release leaves b's slot
    assert (await holders(admin, prefix))[0] == "b"


async def test_a_release_by_another_holder_frees_nothing(
    store: RedisPaceStore, admin: aioredis.Redis, prefix: str
) -> None:
    await store.seed(KEY, capacity=CAP, slots=4, slot_limit=4)
    assert (await take(store, "a", 2)).slots == (0, 1)
    assert (await take(store, "b", 1)).slots == (2,)
    await store.release(KEY, holder="c", raise_to=None, max_slots=8)
    assert await holders(admin, prefix) == {0: "a", 1: "a", 2: "b", 3: None}
    await store.release(KEY, holder="a", raise_to=None, max_slots=8)
    assert await holders(admin, prefix) == {0: None, 1: None, 2: "b", 3: None}


async def test_a_pause_blocks_every_take_until_it_passes_and_empty_empties_the_bucket(
    store: RedisPaceStore,
) -> None:
    await store.seed(KEY, capacity=CAP, slots=2, slot_limit=2)
    await store.pushback(KEY, pause=0.1, empty=False, slow_for=0.0, halve=False, hold_for=0.0)
    state = await store.state(KEY, interactive_seconds=None)
    assert state is not None
    assert state.tokens == CAP  # a pause without `empty` keeps the bucket
    await store.pushback(KEY, pause=0.5, empty=True, slow_for=0.0, halve=False, hold_for=0.0)
    paused = await store.state(KEY, interactive_seconds=None)
    assert paused is not None
    assert paused.tokens == 0.0
    assert 0.0 <= paused.now - paused.at < 1.0
    assert 0.0 < paused.paused_until - paused.now <= 0.5
    await store.pushback(KEY, pause=0.05, empty=False, slow_for=0.0, halve=False, hold_for=0.0)
    state = await store.state(KEY, interactive_seconds=None)
    assert state is not None
    assert state.paused_until == paused.paused_until  # a shorter pause does not shorten it
    assert not await units(store, cost=0.001, interactive=True)
    assert not (await take(store, "a", 1, interactive=True, max_slots=2)).slots
    await asyncio.sleep(0.55)
    assert await units(store, cost=5.0)  # refilled from the pause: 0.55 s at 20 a second
    assert (await take(store, "a", 1, max_slots=2)).slots == (0,)


async def test_a_slow_down_slows_the_refill(store: RedisPaceStore) -> None:
    for key in ("directory/fast", "directory/slow"):
        await store.seed(key, capacity=CAP, slots=0, slot_limit=0)
        await store.pushback(key, pause=0.001, empty=True, slow_for=0.0, halve=False, hold_for=0.0)
    await store.pushback("directory/slow", pause=0.0, empty=False, slow_for=5.0, halve=False, hold_for=0.0)
    state = await store.state("directory/slow", interactive_seconds=None)
    assert state is not None
    assert 4.0 < state.slow_until - state.now <= 5.0
    await asyncio.sleep(0.2)
    assert await units(store, "directory/fast", cost=3.0, slow=0.01)  # 20 a second: 4 units or more
    assert not await units(store, "directory/slow", cost=1.0, slow=0.01)  # 0.2 a second: 1 needs 5 s
    assert await units(store, "directory/slow", cost=0.03, slow=0.01)


async def test_the_interactive_stamp_blocks_background_takes_only(store: RedisPaceStore) -> None:
    await store.seed(KEY, capacity=CAP, slots=4, slot_limit=4)
    state = await store.state(KEY, interactive_seconds=0.5)
    assert state is not None
    assert state.interactive_until - state.now == pytest.approx(0.5, abs=1e-6)
    again = await store.state(KEY, interactive_seconds=0.01)
    assert again is not None
    assert again.interactive_until == state.interactive_until  # never shortened
    assert not await units(store)
    assert not (await take(store, "bg", 1)).slots
    assert await units(store, interactive=True)
    assert (await take(store, "fg", 1, interactive=True)).slots == (0,)
    await asyncio.sleep(0.55)
    assert await units(store)
    assert (await take(store, "bg", 1)).slots == (1,)


async def test_an_unreachable_redis_raises_store_unavailable_at_once() -> None:
    store = RedisPaceStore.from_url("redis://:hunter2secret@127.0.0.1:1/0", prefix="m365connect-test:dead:")
    steps: list[Callable[[], Awaitable[object]]] = [
        lambda: store.seed(KEY, capacity=CAP, slots=2, slot_limit=2),
        lambda: units(store),
        lambda: take(store, "a", 1),
        lambda: store.release(KEY, holder="a", raise_to=2, max_slots=2),
        lambda: store.state(KEY, interactive_seconds=1.0),
        lambda: store.state(KEY, interactive_seconds=None),
        lambda: store.pushback(KEY, pause=1.0, empty=True, slow_for=1.0, halve=True, hold_for=1.0),
    ]
    try:
        for step in steps:
            started = time.monotonic()
            with pytest.raises(StoreUnavailable) as raised:
                await step()
            assert time.monotonic() - started < 1.0
            assert raised.value.__cause__ is not None
            assert "hunter2secret" not in str(raised.value)
            assert "127.0.0.1" not in str(raised.value)
    finally:
        await store.aclose()


@pytest.fixture
async def silent_redis() -> AsyncIterator[tuple[str, list[asyncio.StreamWriter]]]:
    """A server that accepts connections and never says a word: its URL and the connections it holds."""
    held: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"redis://127.0.0.1:{port}/0", held
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("seconds", [None, 1.5])
async def test_a_redis_that_never_answers_raises_store_unavailable_after_the_timeout(
    silent_redis: tuple[str, list[asyncio.StreamWriter]], seconds: float | None
) -> None:
    """The step waits its timeout (the product's half second unless `timeout` says otherwise), then
    raises; it never hangs."""
    url, held = silent_redis
    prefix = "m365connect-test:silent:"
    store = (
        RedisPaceStore.from_url(url, prefix=prefix)
        if seconds is None
        else RedisPaceStore.from_url(url, prefix=prefix, timeout=seconds)
    )
    try:
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match="TimeoutError"):
            await store.state(KEY, interactive_seconds=None)
        waited = time.monotonic() - started
        assert (0.5 if seconds is None else seconds) <= waited < 10.0
        assert held  # it connected: the time went waiting for an answer
    finally:
        await store.aclose()


async def test_steps_queued_behind_one_redis_never_answers_fail_with_it(
    silent_redis: tuple[str, list[asyncio.StreamWriter]],
) -> None:
    """Steps run one at a time per lane, so 20 callers queued behind a step that times out would each
    wait their own half second (10 s); they fail with it instead. A step asked for afterwards tries again."""
    store = RedisPaceStore.from_url(silent_redis[0], prefix="m365connect-test:silent:")
    try:
        for _round in range(2):
            started = time.monotonic()
            failed = await asyncio.gather(
                *(store.state(KEY, interactive_seconds=None) for _ in range(20)), return_exceptions=True
            )
            assert all(isinstance(answer, StoreUnavailable) for answer in failed), failed
            assert 0.5 <= time.monotonic() - started < 5.0
            assert "queued before" in str(failed[-1])
    finally:
        await store.aclose()
