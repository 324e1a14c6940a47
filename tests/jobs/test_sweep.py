"""The sweep of stuck bulk jobs (jobs/sweep.py) on both databases: a chunk the engine gave up is queued
again and the job finishes; past the limit the items fail JOB_ITEM_NOT_PROCESSED and the job finishes;
a chunk waiting or running (slowly) is never swept; two sweeps at once queue a chunk once. And the
bulk job metrics move with what jobs do.

"The engine gave up" is made by hand, as its last failed run leaves it: on SQLite the engine job's row
turns `failed`; on PostgreSQL pgqueuer deletes the row (and logs `exception`). Waiting 43 minutes of
RUN_RETRY_DELAYS for the real thing is not a test.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import Counter

import httpx
from sqlalchemy import text

from m365connect.jobs.models import BulkJob
from m365connect.jobs.service import JobServices, chunk_payload
from m365connect.jobs.sweep import ABANDONED, REQUEUED, SWEEP_TASK, sweep_stuck_jobs
from m365connect.simulator import FakeMicrosoft
from m365connect.state import AppState
from tests.factories import BULK
from tests.helpers import active_mailboxes, headers
from tests.jobs.support import (
    JOBS,
    addresses,
    all_results,
    async_headers,
    body,
    events_of,
    wait_for_status,
    working,
)


def sweeping(state: AppState, *, limit: int = 3) -> JobServices:
    """The state's job services with no grace: any unfinished job is looked at."""
    return dataclasses.replace(state.jobs, sweep_grace=0.0, sweep_limit=limit)


async def start(http: httpx.AsyncClient, key: str, emails: list[str]) -> int:
    response = await http.post(BULK, json=body(emails), headers=async_headers(key))
    assert response.status_code == 202, response.text
    return int(response.json()["job_id"])


async def give_up_chunks(state: AppState) -> None:
    """What the engine leaves after a chunk's last failed run (see the module's docstring)."""
    async with state.engine.begin() as connection:
        if state.work.backend == "sqlite":
            await connection.execute(
                text("UPDATE work_jobs SET status = 'failed' WHERE kind = 'bulk_job.chunk'")
            )
        else:
            await connection.execute(text("DELETE FROM pgqueuer WHERE entrypoint = 'bulk_job.chunk'"))


async def live_chunks(state: AppState, job_id: int, chunks: range) -> set[int]:
    keys = {chunk_payload(job_id, chunk)[1]: chunk for chunk in chunks}
    async with state.sessions() as session:
        return {keys[key] for key in await state.work.live_keys(session, list(keys))}


async def job_row(state: AppState, job_id: int) -> BulkJob:
    async with state.sessions() as session:
        job = await session.get(BulkJob, job_id)
    assert job is not None
    return job


def sample(state: AppState, name: str, **labels: str) -> float:
    value = state.metrics.registry.get_sample_value(name, labels)
    assert value is not None, name
    return value


async def metrics_text(http: httpx.AsyncClient) -> str:
    response = await http.get("/metrics")
    assert response.status_code == 200
    return response.text


def test_the_sweep_is_a_periodic_task_of_the_engine(job_state: AppState) -> None:
    assert SWEEP_TASK in job_state.work.periodic
    assert job_state.work.periodic[SWEEP_TASK].seconds == job_state.settings.bulk_job_sweep_seconds


async def test_a_chunk_the_engine_gave_up_is_queued_again_and_the_job_finishes(
    http: httpx.AsyncClient, job_state: AppState, key: str, credential_id: int, database_url: str
) -> None:
    # 120 items in chunks of 50, two in flight: chunks 0 and 1 are queued at the 202.
    job_id = await start(http, key, addresses(120))
    assert "m365connect_bulk_job_items_pending 120.0" in await metrics_text(http)
    await give_up_chunks(job_state)
    assert await live_chunks(job_state, job_id, range(3)) == set()

    assert await sweep_stuck_jobs(job_state.transactions, sweeping(job_state)) == {job_id: REQUEUED}
    assert await live_chunks(job_state, job_id, range(3)) == {0, 1}  # chunk 2 waits for chunk 0, as before
    assert (await job_row(job_state, job_id)).sweeps == 1

    async with working(job_state):
        done = await wait_for_status(http, key, job_id)
    assert (done["processed"], done["connected"]) == (120, 120)
    assert (await job_row(job_state, job_id)).sweeps == 0  # a result written resets the count
    rows = await active_mailboxes(job_state)
    assert sorted(row.email for row in rows) == sorted(addresses(120))
    assert len(await events_of(database_url, "mailbox.connected")) == 120
    assert len(await events_of(database_url, "bulk_job.finished")) == 1
    assert sample(job_state, "m365connect_bulk_job_sweeps_total", action="requeued") == 1
    assert sample(job_state, "m365connect_bulk_jobs_started_total") == 1
    assert sample(job_state, "m365connect_bulk_jobs_finished_total", status="DONE") == 1
    assert sample(job_state, "m365connect_bulk_job_items_total", result="connected") == 120
    assert sample(job_state, "m365connect_bulk_job_chunk_duration_seconds_count") >= 3
    assert "m365connect_bulk_job_items_pending 0.0" in await metrics_text(http)
    # A finished job is not looked at again.
    assert await sweep_stuck_jobs(job_state.transactions, sweeping(job_state)) == {}


async def test_past_the_limit_the_items_fail_not_processed_and_the_job_finishes(
    http: httpx.AsyncClient, job_state: AppState, key: str, credential_id: int, database_url: str
) -> None:
    emails = [*addresses(60), "not-an-address", addresses(1)[0].upper()]
    job_id = await start(http, key, emails)
    await give_up_chunks(job_state)

    assert await sweep_stuck_jobs(job_state.transactions, sweeping(job_state, limit=0)) == {job_id: ABANDONED}
    job = (await http.get(f"{JOBS}/{job_id}", headers=headers(key))).json()
    assert (job["status"], job["processed"], job["connected"], job["failed"]) == ("DONE", 62, 0, 62)
    results = await all_results(http, key, job_id)
    assert [item["index"] for item in results] == list(range(62))
    assert Counter(item["error"] for item in results) == {
        "JOB_ITEM_NOT_PROCESSED": 60,
        "INVALID_EMAIL": 1,
        "DUPLICATE_EMAIL": 1,
    }
    assert not any(item["success"] for item in results)
    (finished,) = await events_of(database_url, "bulk_job.finished")
    assert finished.data == job
    assert await active_mailboxes(job_state) == []
    assert sample(job_state, "m365connect_bulk_job_sweeps_total", action="abandoned") == 1
    assert sample(job_state, "m365connect_bulk_jobs_finished_total", status="DONE") == 1
    assert sample(job_state, "m365connect_bulk_job_items_total", result="JOB_ITEM_NOT_PROCESSED") == 60


async def test_a_job_whose_chunks_wait_or_run_slowly_is_not_swept(
    http: httpx.AsyncClient, job_state: AppState, key: str, credential_id: int, tenant: FakeMicrosoft
) -> None:
    job_id = await start(http, key, addresses(100))
    # Waiting in the queue (as between two waves): live, whatever the grace.
    assert await sweep_stuck_jobs(job_state.transactions, sweeping(job_state, limit=0)) == {}
    tenant.faults.latency_ms = 300
    async with working(job_state):
        # Running, slowly: RUNNING and nothing written yet (each Graph round trip takes 300 ms).
        deadline = time.monotonic() + 30
        while (await job_row(job_state, job_id)).status != "RUNNING":
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        assert (await job_row(job_state, job_id)).processed == 0
        assert await sweep_stuck_jobs(job_state.transactions, sweeping(job_state, limit=0)) == {}
        tenant.faults.latency_ms = 0
        done = await wait_for_status(http, key, job_id)
    assert (done["processed"], done["connected"]) == (100, 100)
    assert (await job_row(job_state, job_id)).sweeps == 0
    assert sample(job_state, "m365connect_bulk_job_sweeps_total", action="requeued") == 0
    assert sample(job_state, "m365connect_bulk_job_sweeps_total", action="abandoned") == 0


async def test_two_sweeps_at_once_queue_a_chunk_once(
    http: httpx.AsyncClient, job_state: AppState, key: str, credential_id: int
) -> None:
    job_id = await start(http, key, addresses(40))
    await give_up_chunks(job_state)
    services = sweeping(job_state)
    first, second = await asyncio.gather(
        sweep_stuck_jobs(job_state.transactions, services),
        sweep_stuck_jobs(job_state.transactions, services),
    )
    assert sorted([*first.values(), *second.values()]) == [REQUEUED]
    assert (await job_row(job_state, job_id)).sweeps == 1
    assert await live_chunks(job_state, job_id, range(1)) == {0}


async def test_the_job_metrics_count_a_cancel(
    http: httpx.AsyncClient, job_state: AppState, key: str, credential_id: int
) -> None:
    job_id = await start(http, key, addresses(10))
    text_before = await metrics_text(http)
    assert "m365connect_bulk_jobs_unfinished 1.0" in text_before
    assert "m365connect_bulk_job_items_pending 10.0" in text_before
    assert (await http.delete(f"{JOBS}/{job_id}", headers=headers(key))).status_code == 200
    assert sample(job_state, "m365connect_bulk_jobs_finished_total", status="CANCELLED") == 1
    assert sample(job_state, "m365connect_bulk_jobs_finished_total", status="DONE") == 0
    assert "m365connect_bulk_jobs_unfinished 0.0" in await metrics_text(http)
