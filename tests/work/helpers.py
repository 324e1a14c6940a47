"""Helpers of the work engine's tests: a table that records runs, an engine per test, polling."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from m365connect.db.engine import create_engine
from m365connect.work.engine import Work, build_work
from m365connect.work.ports import JobKind, JobRun, Payload

RUNS_TABLE = "work_test_runs"
# Every table a work test writes on the shared PostgreSQL database (emptied after each test).
PG_WORK_TABLES = ("pgqueuer", "pgqueuer_log", "pgqueuer_statistics", "work_schedules", RUNS_TABLE)


async def create_runs_table(engine: AsyncEngine) -> None:
    """The runs the test handlers record: one row per start (and `done` rows), with the process id."""
    async with engine.begin() as connection:
        await connection.execute(
            text(
                f"CREATE TABLE IF NOT EXISTS {RUNS_TABLE} (key VARCHAR(100) NOT NULL, "
                "what VARCHAR(20) NOT NULL, attempt INTEGER NOT NULL, pid INTEGER NOT NULL, "
                "at DOUBLE PRECISION NOT NULL)"
            )
        )


async def drop_runs_table(database_url: str) -> None:
    """Drop the runs table (the PostgreSQL database is shared by the run's tests)."""
    engine = create_engine(database_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(text(f"DROP TABLE IF EXISTS {RUNS_TABLE}"))
    finally:
        await engine.dispose()


async def record(engine: AsyncEngine, *, key: str, what: str, attempt: int) -> None:
    """One row of the runs table, committed at once."""
    async with engine.begin() as connection:
        await connection.execute(
            text(f"INSERT INTO {RUNS_TABLE} (key, what, attempt, pid, at) VALUES (:k, :w, :a, :p, :t)"),
            {"k": key, "w": what, "a": attempt, "p": os.getpid(), "t": time.time()},
        )


async def runs(engine: AsyncEngine, *, what: str = "start") -> list[tuple[str, int, int, float]]:
    """(key, attempt, pid, at) of the recorded rows, oldest first."""
    async with engine.connect() as connection:
        rows = await connection.execute(
            text(f"SELECT key, attempt, pid, at FROM {RUNS_TABLE} WHERE what = :w ORDER BY at"), {"w": what}
        )
        return [(row[0], row[1], row[2], row[3]) for row in rows]


def recording_kind(engine: AsyncEngine, name: str = "test.record", **kwargs: Any) -> JobKind:
    """A kind whose handler records its run; payload `fail_until` (attempt numbers below it raise),
    `hang_first` (the first run of the key waits forever)."""

    async def handler(run: JobRun, payload: Payload) -> None:
        key = str(payload["key"])
        await record(engine, key=key, what="start", attempt=run.attempt)
        if payload.get("hang_first") and run.attempt == 1 and await _first_start(engine, key):
            await asyncio.Event().wait()
        if run.attempt < int(payload.get("fail_until", 0)):
            raise RuntimeError(f"attempt {run.attempt} fails")
        await asyncio.sleep(float(payload.get("sleep", 0)))
        await record(engine, key=key, what="done", attempt=run.attempt)

    return JobKind(name=name, handler=handler, **kwargs)


async def _first_start(engine: AsyncEngine, key: str) -> bool:
    async with engine.connect() as connection:
        count = await connection.scalar(
            text(f"SELECT count(*) FROM {RUNS_TABLE} WHERE key = :k AND what = 'start'"), {"k": key}
        )
    return count == 1


def new_work(engine: AsyncEngine, database_url: str, *, lease: float = 2.0, concurrency: int = 4) -> Work:
    """An engine as open_state builds it, with a short lease and poll for tests."""
    return build_work(
        database_url, engine=engine, lease_seconds=lease, poll_seconds=0.1, concurrency=concurrency
    )


@asynccontextmanager
async def running(*works: Work) -> AsyncIterator[None]:
    """The engines' loops run inside the block; they are stopped (gracefully) at its end."""
    stop = asyncio.Event()
    tasks = [asyncio.create_task(work.run(stop)) for work in works]
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=30)


async def eventually(check: Callable[[], Awaitable[bool]], *, within: float = 20.0) -> None:
    """Poll `check` until it holds; fail after `within` seconds (a bound, not a measurement)."""
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


@asynccontextmanager
async def work_engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """A SQLAlchemy engine on the test database with the runs table; disposed at the end."""
    engine = create_engine(database_url)
    try:
        await create_runs_table(engine)
        yield engine
    finally:
        await engine.dispose()
