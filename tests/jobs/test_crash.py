"""kill -9 in the middle of a bulk job (issue 12): on PostgreSQL a `serve` and a `worker` share the job
and each is killed in turn (a new `serve` takes over); on SQLite the one `serve` is killed and restarted.
The job finishes, each mailbox is connected once (one row, one `mailbox.connected`), and the results are
complete and read as if the job had run once."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from m365connect.crypto import generate_key
from m365connect.simulator import FakeMicrosoft
from tests.factories import BULK, CREDENTIALS
from tests.helpers import headers
from tests.jobs.support import CREDENTIAL, JOBS, USERS, addresses, async_headers, body, events_of, scenario
from tests.processes import Children
from tests.served import active, mailbox_rows, new_api_key, serve, service_env

LATENCY_MS = 100  # each Graph round trip: chunks take long enough to be killed in the middle
JOB_ENV = {
    "M365CONNECT_BULK_JOB_CHUNK_SIZE": "25",
    "M365CONNECT_BULK_JOB_CONCURRENCY": "4",
    "M365CONNECT_WORK_LEASE_SECONDS": "2",
    "M365CONNECT_WORK_POLL_SECONDS": "0.1",
}


@pytest.fixture(scope="module")
def crash_tenant(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeMicrosoft]:
    """A simulator of its own (its latency is changed for the whole test)."""
    workdir = tmp_path_factory.mktemp("jobs-crash-microsoft")
    path = workdir / "scenario.json"
    path.write_text(json.dumps(scenario()))
    with FakeMicrosoft(path, state_dir=workdir) as running:
        yield running


async def progress(http: httpx.AsyncClient, key: str, job_id: int) -> dict[str, Any]:
    response = await http.get(f"{JOBS}/{job_id}", headers=headers(key))
    assert response.status_code == 200, response.text
    job: dict[str, Any] = response.json()
    return job


async def wait_processed(
    url: str, key: str, job_id: int, *, at_least: int, seconds: float = 90
) -> dict[str, Any]:
    """Poll until `processed` reaches `at_least` (or the job is DONE)."""
    deadline = time.monotonic() + seconds
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        while True:
            job = await progress(http, key, job_id)
            if job["processed"] >= at_least or job["status"] == "DONE":
                return job
            assert time.monotonic() < deadline, job
            await asyncio.sleep(0.05)


def kill_9(child: subprocess.Popen[bytes]) -> None:
    child.kill()
    assert child.wait(timeout=10) == -9


def start_worker(children: Children, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """`m365connect worker`, waiting until its loop has started."""
    child = children.start(["worker"], cwd=log.parent, env=env, log=log)
    deadline = time.monotonic() + 30
    while "worker.started" not in log.read_text():
        assert child.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)
    return child


async def test_kill_9_mid_job_the_job_finishes_and_connects_each_mailbox_once(
    database_url: str, backend: str, crash_tenant: FakeMicrosoft, tmp_path: Path
) -> None:
    emails = addresses()
    env = {**service_env(database_url=database_url, keys=generate_key(), microsoft=crash_tenant), **JOB_ENV}
    key = await new_api_key(database_url, account="crash")
    children = Children()
    try:
        url, _ = serve(children, env=env, workdir=tmp_path, name="serve-1")
        first_serve = children.started[-1]
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            created = await http.post(CREDENTIALS, json=CREDENTIAL, headers=headers(key))
            assert created.status_code == 201, created.text
        worker = None
        if backend == "postgresql":
            worker_env = {**env, "M365CONNECT_LOG_LEVEL": "INFO", "M365CONNECT_LOG_FORMAT": "text"}
            worker = start_worker(children, worker_env, tmp_path / "worker.log")
        crash_tenant.faults.latency_ms = LATENCY_MS
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            started = await http.post(BULK, json=body(emails), headers=async_headers(key))
        assert started.status_code == 202, started.text
        job_id = started.json()["job_id"]

        if worker is not None:  # PostgreSQL: kill the worker mid-job, then the serve; a new serve goes on
            before = await wait_processed(url, key, job_id, at_least=100)
            assert before["status"] == "RUNNING", before
            kill_9(worker)
            before = await wait_processed(url, key, job_id, at_least=250)
            assert before["status"] == "RUNNING", before
            kill_9(first_serve)
        else:  # SQLite: the one serve is killed mid-job and started again
            before = await wait_processed(url, key, job_id, at_least=150)
            assert before["status"] == "RUNNING", before
            kill_9(first_serve)
        url, _ = serve(children, env=env, workdir=tmp_path, name="serve-2")
        crash_tenant.faults.latency_ms = 0
        done = await wait_processed(url, key, job_id, at_least=USERS)
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            pages = [
                (await http.get(f"{JOBS}/{job_id}/results", params={"page": p}, headers=headers(key))).json()
                for p in (0, 1)
            ]
    finally:
        crash_tenant.faults.latency_ms = 0
        children.stop_all()

    assert done["status"] == "DONE", done
    assert (done["processed"], done["connected"], done["failed"]) == (USERS, USERS, 0)
    results = pages[0]["content"] + pages[1]["content"]
    assert [item["index"] for item in results] == list(range(USERS))
    assert [item["email"] for item in results] == emails
    assert all(item["success"] and "already_connected" not in item for item in results), [
        item for item in results if not item["success"] or "already_connected" in item
    ][:3]
    rows = await mailbox_rows(database_url)
    assert len(rows) == len(active(rows)) == USERS  # one row per address: none connected twice
    assert {row.email: row.id for row in rows} == {item["email"]: item["id"] for item in results}
    connected = await events_of(database_url, "mailbox.connected")
    assert sorted(event.data["id"] for event in connected) == sorted(row.id for row in rows)
    finished = await events_of(database_url, "bulk_job.finished")
    assert [event.data["job_id"] for event in finished] == [job_id]
