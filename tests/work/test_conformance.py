"""The work engine's contract, the same cases on SQLite (our queue) and PostgreSQL (pgqueuer)."""

from __future__ import annotations

import asyncio
import time
from itertools import pairwise

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from m365connect.db.engine import create_session_factory
from m365connect.work.engine import build_work
from m365connect.work.ports import JobKind, JobRun, Payload, Retry
from m365connect.work.repository import prune
from tests.work.helpers import eventually, new_work, recording_kind, running, runs


async def _enqueue(engine: AsyncEngine, work_url: str, *jobs: dict[str, object], **options: object) -> None:
    work = new_work(engine, work_url)
    async with create_session_factory(engine)() as session:
        for payload in jobs:
            await work.enqueue(session, "test.record", payload, **options)  # type: ignore[arg-type]
        await session.commit()


async def test_a_job_of_a_rolled_back_transaction_never_runs_and_a_committed_one_runs_once(
    engine: AsyncEngine, database_url: str
) -> None:
    work = new_work(engine, database_url)
    work.register(recording_kind(engine))
    async with running(work):
        async with create_session_factory(engine)() as session:
            await work.enqueue(session, "test.record", {"key": "rolled-back"})
            await session.rollback()
        async with create_session_factory(engine)() as session:
            await work.enqueue(session, "test.record", {"key": "committed"})
            await session.commit()

        async def committed_done() -> bool:
            return len(await runs(engine, what="done")) == 1

        await eventually(committed_done)
        # Another job enqueued after both: once it ran, the rolled-back one would have run before it.
        await _enqueue(engine, database_url, {"key": "after"})

        async def after_done() -> bool:
            return len(await runs(engine, what="done")) == 2

        await eventually(after_done)
    assert [key for key, *_ in await runs(engine)] == ["committed", "after"]
    assert {row.kind: row.queued + row.running for row in await work.stats()}.get("test.record", 0) == 0


async def test_a_job_is_invisible_to_workers_until_its_transaction_commits(
    engine: AsyncEngine, database_url: str
) -> None:
    work = new_work(engine, database_url)
    work.register(recording_kind(engine))
    async with running(work), create_session_factory(engine)() as session:
        await work.enqueue(session, "test.record", {"key": "pending"})
        # Enough polls (0.1 s each) for a worker to have taken a visible job: none may see this one.
        await asyncio.sleep(0.5)
        assert await runs(engine) == []
        await session.commit()

        async def ran() -> bool:
            return len(await runs(engine, what="done")) == 1

        await eventually(ran)


async def test_a_dedupe_key_admits_one_job_while_it_waits_or_runs_and_a_new_one_once_it_finished(
    engine: AsyncEngine, database_url: str
) -> None:
    await _enqueue(engine, database_url, {"key": "a"}, {"key": "b"}, {"key": "c"}, dedupe_key="same")
    work = new_work(engine, database_url)
    work.register(recording_kind(engine))
    assert sum(row.queued for row in await work.stats()) == 1
    async with running(work):

        async def first_finished() -> bool:  # run, and recorded as finished by the engine
            return sum(row.queued + row.running for row in await work.stats()) == 0

        await eventually(first_finished)
        await _enqueue(engine, database_url, {"key": "d"}, dedupe_key="same")

        async def second_done() -> bool:
            return len(await runs(engine, what="done")) == 2

        await eventually(second_done)
    assert [key for key, *_ in await runs(engine, what="done")] == ["a", "d"]


async def test_a_delayed_job_waits_its_delay(engine: AsyncEngine, database_url: str) -> None:
    work = new_work(engine, database_url)
    work.register(recording_kind(engine))
    async with running(work):
        enqueued = time.time()
        await _enqueue(engine, database_url, {"key": "late"}, delay=1.5)
        await _enqueue(engine, database_url, {"key": "now"})

        async def both_done() -> bool:
            return len(await runs(engine, what="done")) == 2

        await eventually(both_done)
    started = {key: at for key, _attempt, _pid, at in await runs(engine)}
    assert started["late"] - enqueued >= 1.5
    assert started["now"] < started["late"]


async def test_a_failing_job_follows_its_retry_schedule_then_gives_up(
    engine: AsyncEngine, database_url: str
) -> None:
    work = new_work(engine, database_url)
    work.register(recording_kind(engine, retry_delays=(0.3, 0.6)))
    await _enqueue(engine, database_url, {"key": "doomed", "fail_until": 99})
    async with running(work):

        async def given_up() -> bool:
            return any(row.failed == 1 and row.queued + row.running == 0 for row in await work.stats())

        await eventually(given_up)
        await asyncio.sleep(1.0)  # long enough for a fourth run to show, were there one
    started = await runs(engine)
    assert [attempt for _key, attempt, _pid, _at in started] == [1, 2, 3]
    gaps = [later[3] - earlier[3] for earlier, later in pairwise(started)]
    assert gaps[0] >= 0.3
    assert gaps[1] >= 0.6
    assert await runs(engine, what="done") == []


async def test_a_job_that_fails_then_succeeds_runs_until_it_succeeds(
    engine: AsyncEngine, database_url: str
) -> None:
    work = new_work(engine, database_url)
    work.register(recording_kind(engine, retry_delays=(0.1, 0.1, 0.1)))
    await _enqueue(engine, database_url, {"key": "flaky", "fail_until": 3})
    async with running(work):

        async def done() -> bool:
            return len(await runs(engine, what="done")) == 1

        await eventually(done)
    assert [attempt for _key, attempt, _pid, _at in await runs(engine)] == [1, 2, 3]
    assert [attempt for _key, attempt, _pid, _at in await runs(engine, what="done")] == [3]


async def test_retry_asks_for_another_run_after_its_delay_whatever_the_schedule(
    engine: AsyncEngine, database_url: str
) -> None:
    seen: list[tuple[int, float]] = []

    async def handler(run: JobRun, _payload: Payload) -> None:
        seen.append((run.attempt, time.time()))
        if run.attempt == 1:
            raise Retry(0.5, "not yet")

    work = new_work(engine, database_url)
    work.register(JobKind(name="test.record", handler=handler))  # no schedule: errors are never retried
    await _enqueue(engine, database_url, {"key": "patient"})
    async with running(work):

        async def twice() -> bool:
            return len(seen) == 2

        await eventually(twice)
    assert [attempt for attempt, _ in seen] == [1, 2]
    assert seen[1][1] - seen[0][1] >= 0.5


async def test_a_periodic_task_runs_once_per_period_across_two_engines(
    engine: AsyncEngine, database_url: str
) -> None:
    started: list[tuple[str, float]] = []
    works = [new_work(engine, database_url), new_work(engine, database_url)]
    for name, work in zip(("first", "second"), works, strict=True):

        async def tick(name: str = name) -> None:
            started.append((name, time.time()))

        work.every("test.tick", 1.0, tick)
    began = time.time()
    async with running(*works):

        async def four_runs() -> bool:
            return len(started) >= 4

        await eventually(four_runs)
    ended = time.time()
    times = sorted(at for _, at in started)
    # At most one run per period between the first claim and the stop, however late each one started.
    assert len(times) <= int(ended - began) + 1, (ended - began, times)
    # Each run's schedule moved on by one period before it started. A run starts between its due time and
    # a tick (0.1 s) later, plus whatever a loaded machine adds to the claim (seen above 0.1 s with the
    # whole suite on two CPUs); two engines winning the same period would start within a tick of each other.
    assert all(later - earlier >= 0.5 for earlier, later in pairwise(times)), times


async def test_stats_give_depth_and_the_wait_of_the_oldest_due_job_per_kind(
    engine: AsyncEngine, database_url: str
) -> None:
    await _enqueue(engine, database_url, {"key": "1"}, {"key": "2"})
    await _enqueue(engine, database_url, {"key": "later"}, delay=3600)
    await asyncio.sleep(0.3)
    work = new_work(engine, database_url)
    (row,) = [row for row in await work.stats() if row.kind == "test.record"]
    assert (row.queued, row.running, row.failed) == (3, 0, 0)
    assert 0.3 <= row.oldest_due_seconds < 60


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"dedupe_key": ""}, "dedupe key"),
        ({"delay": -1.0}, "delay"),
        ({"delay": float("inf")}, "delay"),
        ({"delay": float("nan")}, "delay"),
        ({"payload": {"when": object()}}, "JSON"),
    ],
)
async def test_bad_enqueue_arguments_are_refused_clearly(
    engine: AsyncEngine, database_url: str, options: dict[str, object], message: str
) -> None:
    work = new_work(engine, database_url)
    options = dict(options)
    payload = options.pop("payload", {"key": "x"})
    async with create_session_factory(engine)() as session:
        with pytest.raises(ValueError, match=message):
            await work.enqueue(session, "test.record", payload, **options)  # type: ignore[arg-type]


async def test_postgresql_wakes_a_worker_at_commit_without_waiting_for_its_poll(
    engine: AsyncEngine, database_url: str, backend: str
) -> None:
    if backend != "postgresql":
        pytest.skip("SQLite has no NOTIFY: other processes find a job at their next poll")
    work = build_work(database_url, engine=engine, lease_seconds=2, poll_seconds=60, concurrency=2)
    work.register(recording_kind(engine))
    async with running(work):
        await asyncio.sleep(0.5)  # the worker is listening, its next poll a minute away
        await _enqueue(engine, database_url, {"key": "notified"})

        async def ran() -> bool:
            return len(await runs(engine, what="done")) == 1

        await eventually(ran, within=20)  # well inside the 60 s poll: only the NOTIFY at commit woke it


async def test_prune_forgets_given_up_jobs_older_than_it_keeps(
    engine: AsyncEngine, database_url: str
) -> None:
    work = new_work(engine, database_url)
    work.register(recording_kind(engine))  # no schedule: the first failure gives up
    await _enqueue(engine, database_url, {"key": "doomed", "fail_until": 99})
    async with running(work):

        async def given_up() -> bool:
            return any(row.failed == 1 for row in await work.stats())

        await eventually(given_up)
    async with engine.begin() as connection:
        assert await prune(connection, keep_seconds=3600) == 0  # younger than what is kept
    await asyncio.sleep(0.05)
    async with engine.begin() as connection:
        assert await prune(connection, keep_seconds=0.01) >= 1
    assert all(row.failed == 0 for row in await work.stats())
