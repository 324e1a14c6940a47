"""/metrics shows the queue (depth and oldest wait per kind, all processes) and this process's runs."""

from __future__ import annotations

import asyncio

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from m365connect.state import AppState
from m365connect.work.ports import JobKind, JobRun, Payload
from tests.work.helpers import eventually, running


async def test_metrics_show_queue_depth_oldest_wait_and_runs_by_outcome(
    client: httpx.AsyncClient, state: AppState, engine: AsyncEngine
) -> None:
    del engine  # requested for its clean queue (PostgreSQL's is shared by the run's tests)
    async with state.sessions() as session:
        for number in range(3):
            await state.work.enqueue(session, "test.metrics", {"n": number})
        await session.commit()
    await asyncio.sleep(0.2)
    text = (await client.get("/metrics")).text
    assert 'm365connect_work_queue_jobs{kind="test.metrics",state="queued"} 3.0' in text
    oldest = next(
        line for line in text.splitlines() if line.startswith("m365connect_work_oldest_due_seconds{")
    )
    assert float(oldest.rsplit(" ", 1)[1]) >= 0.2

    async def handler(run: JobRun, payload: Payload) -> None:
        if payload["n"] == 2:
            raise RuntimeError("no")

    state.work.register(JobKind(name="test.metrics", handler=handler))
    async with running(state.work):

        async def drained() -> bool:
            return sum(row.queued + row.running for row in await state.work.stats()) == 0

        await eventually(drained)
    text = (await client.get("/metrics")).text
    assert 'm365connect_work_jobs_total{kind="test.metrics",outcome="done"} 2.0' in text
    assert 'm365connect_work_jobs_total{kind="test.metrics",outcome="failed"} 1.0' in text
    assert 'm365connect_work_queue_jobs{kind="test.metrics",state="queued"} 0.0' in text
    assert 'm365connect_work_queue_jobs{kind="test.metrics",state="failed"} 1.0' in text
