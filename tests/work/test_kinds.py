"""Per-kind caps of the work engine, the same cases on SQLite (our queue) and PostgreSQL (pgqueuer).

Running jobs are counted as they run (a gauge in the handler, its peak kept), not inferred from timings.
Two `Work` engines on one database are two queue owners (SQLite) or two pgqueuer managers on their own
connections (PostgreSQL): what two processes are to the queue, whose claims count in the database.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine

from m365connect.db.engine import create_session_factory
from m365connect.settings import Settings
from m365connect.work.engine import Work
from m365connect.work.ports import JobKind, JobRun, Payload
from tests.work.helpers import eventually, new_work, recording_kind, running, runs


@dataclass
class Gauge:
    """Jobs of one kind running now (in this test process), their peak, and a gate that holds them."""

    now: int = 0
    peak: int = 0
    finished: int = 0
    gate: asyncio.Event = field(default_factory=asyncio.Event)

    def kind(self, name: str, *, concurrency: int | None) -> JobKind:
        async def handler(run: JobRun, payload: Payload) -> None:
            self.now += 1
            self.peak = max(self.peak, self.now)
            try:
                await self.gate.wait()
            finally:
                self.now -= 1
            self.finished += 1

        return JobKind(name=name, handler=handler, concurrency=concurrency)


async def _enqueue(work: Work, engine: AsyncEngine, kind: str, count: int, prefix: str) -> None:
    async with create_session_factory(engine)() as session:
        for number in range(count):
            await work.enqueue(session, kind, {"key": f"{prefix}{number}"})
        await session.commit()


async def test_a_kind_at_its_cap_runs_no_more_at_once_while_another_kind_still_runs(
    engine: AsyncEngine, database_url: str
) -> None:
    capped = Gauge()
    work = new_work(engine, database_url, concurrency=6)
    work.register(capped.kind("test.capped", concurrency=2))
    work.register(recording_kind(engine))
    await _enqueue(work, engine, "test.capped", 5, "capped-")
    async with running(work):
        try:

            async def two_held() -> bool:
                return capped.now >= 2

            await eventually(two_held)
            # The capped kind holds its 2 places (and 3 of its jobs wait): the other kind still runs.
            await _enqueue(work, engine, "test.record", 3, "other-")

            async def others_done() -> bool:
                return len(await runs(engine, what="done")) == 3

            await eventually(others_done)
            assert (capped.now, capped.peak) == (2, 2)
        finally:
            capped.gate.set()

        async def all_done() -> bool:
            return capped.finished == 5

        await eventually(all_done)
    assert capped.peak == 2


async def test_a_kind_s_cap_holds_across_two_engines_on_one_database(
    engine: AsyncEngine, database_url: str
) -> None:
    capped = Gauge()
    works = [new_work(engine, database_url, concurrency=4) for _ in range(2)]
    for work in works:
        work.register(capped.kind("test.capped", concurrency=3))
    await _enqueue(works[0], engine, "test.capped", 8, "capped-")
    async with running(*works):
        try:

            async def three_held() -> bool:
                return capped.now >= 3

            await eventually(three_held)
            # Several polls of both engines (0.1 s each) with 5 jobs due and 5 free places among them.
            await asyncio.sleep(0.5)
            assert (capped.now, capped.peak) == (3, 3)
        finally:
            capped.gate.set()

        async def all_done() -> bool:
            return capped.finished == 8

        await eventually(all_done)
    assert capped.peak == 3


@pytest.mark.parametrize("concurrency", [0, -1, 2.5])
async def test_a_kind_s_cap_must_be_a_whole_number_of_at_least_one(
    engine: AsyncEngine, database_url: str, concurrency: object
) -> None:
    work = new_work(engine, database_url)
    with pytest.raises(ValueError, match="concurrency"):
        work.register(
            JobKind(
                name="test.bad", handler=Gauge().kind("x", concurrency=None).handler, concurrency=concurrency
            )
        )  # type: ignore[arg-type]


def test_bulk_job_slots_must_leave_room_for_the_other_kinds() -> None:
    with pytest.raises(ValidationError, match="M365CONNECT_BULK_JOB_SLOTS"):
        Settings(work_concurrency=10, bulk_job_slots=10)
    settings = Settings(work_concurrency=10, bulk_job_slots=9)
    assert (settings.work_concurrency, settings.bulk_job_slots) == (10, 9)
    defaults = Settings()
    assert defaults.work_concurrency - defaults.bulk_job_slots == 10
