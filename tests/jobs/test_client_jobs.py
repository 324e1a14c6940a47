"""`m365connect connect` with a file larger than one request: one bulk job, followed, resumable, and the
same results CSV as the synchronous path.

The service runs under uvicorn on the test's event loop with a request limit of 40 (the client's
--batch-size 40); its work engine runs only where a test starts it, so a job stays QUEUED while the client
is interrupted. The commands run in a worker thread (CliRunner) or, to be killed, as a real process.
"""

from __future__ import annotations

import asyncio
import csv
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import Result
from typer.testing import CliRunner

from m365connect.app import create_app
from m365connect.cli import app
from m365connect.client.csv_io import RESULT_COLUMNS
from m365connect.client.jobs import job_file
from m365connect.settings import Settings
from m365connect.state import AppState, open_state
from tests.helpers import headers
from tests.jobs.support import DOMAIN, JOBS, addresses, working
from tests.processes import EXECUTABLE, clean_env
from tests.served import serving_in_process

LIMIT = 40
DELIVERABILITY = ("spf_correct", "dkim_correct", "dmarc_correct", "spf_reason", "dkim_reason", "dmarc_reason")


@dataclass(frozen=True)
class Served:
    url: str
    state: AppState


@pytest.fixture
async def served(job_settings: Settings) -> AsyncIterator[Served]:
    """The service on a free port of 127.0.0.1, MAX_ACCOUNTS_PER_REQUEST 40, no work engine running."""
    limited = job_settings.model_copy(update={"max_accounts_per_request": LIMIT})
    async with open_state(limited) as state, serving_in_process(create_app(limited, state=state)) as url:
        yield Served(url=url, state=state)


def _env(served: Served, key: str) -> dict[str, str]:
    return {"M365CONNECT_URL": served.url, "M365CONNECT_API_KEY": key}


async def run(served: Served, key: str, *args: str, exit_code: int = 0) -> Result:
    """The CLI in a worker thread against the served service, asserting the exit code."""
    result = await asyncio.to_thread(CliRunner().invoke, app, list(args), env=_env(served, key))
    assert result.exit_code == exit_code, (result.output, result.exception)
    return result


def results_of(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as source:
        reader = csv.DictReader(source)
        assert tuple(reader.fieldnames or ()) == RESULT_COLUMNS
        return list(reader)


async def jobs_of(http: httpx.AsyncClient, key: str) -> list[dict[str, Any]]:
    listed = await http.get(JOBS, headers=headers(key))
    assert listed.status_code == 200, listed.text
    jobs: list[dict[str, Any]] = listed.json()["content"]
    return jobs


def mixed_file(path: Path, count: int) -> Path:
    """`count` rows: tenant mailboxes (every third with a display name), a repeated address in another
    case, an unknown mailbox and a malformed address."""
    lines = ["mailbox_email,display_name"]
    for index, email in enumerate(addresses(count - 3)):
        lines.append(f"{email},User {index}" if index % 3 == 0 else f"{email},")
    lines += [f"USER5@{DOMAIN.upper()},again", f"nobody@{DOMAIN},", "not an address,"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _connect(source: Path, credential_id: int, *extra: str) -> list[str]:
    return ["connect", str(source), "--credential-id", str(credential_id), "--batch-size", str(LIMIT), *extra]


async def test_a_file_larger_than_a_request_goes_as_one_job_with_the_synchronous_results(
    served: Served, http: httpx.AsyncClient, key: str, credential_id: int, tmp_path: Path
) -> None:
    source = mixed_file(tmp_path / "mailboxes.csv", 100)
    async with working(served.state):
        as_job = await run(served, key, *_connect(source, credential_id, "--poll-interval", "0.1"))
        job_rows = results_of(tmp_path / "mailboxes.results.csv")
        jobs = await jobs_of(http, key)
        assert [(j["status"], j["total"], j["processed"]) for j in jobs] == [("DONE", 100, 100)]
        assert f"job {jobs[0]['job_id']}" in as_job.stdout
        assert "97 connected, 3 failed" in as_job.stdout
        assert not job_file(tmp_path / "mailboxes.results.csv").exists()  # forgotten once written

        # The same file the synchronous way (requests of 40): the same rows, codes, ids and explanations
        # (deliverability is not checked again for an already connected mailbox, so it is left out).
        target = tmp_path / "sync.csv"
        await run(served, key, *_connect(source, credential_id, "--no-job", "-o", str(target)))
        assert len(await jobs_of(http, key)) == 1

    sync_rows = results_of(target)
    assert len(job_rows) == len(sync_rows) == 100

    def comparable(row: dict[str, str]) -> dict[str, str]:
        return {name: value for name, value in row.items() if name not in DELIVERABILITY}

    assert [comparable(r) for r in job_rows] == [comparable(r) for r in sync_rows]
    assert [(r["mailbox_email"], r["error"]) for r in job_rows[-3:]] == [
        (f"USER5@{DOMAIN.upper()}", "DUPLICATE_EMAIL"),
        (f"nobody@{DOMAIN}", "MAILBOX_NOT_FOUND"),
        ("not an address", "INVALID_EMAIL"),
    ]
    assert job_rows[0]["display_name"] == "User 0"
    assert job_rows[0]["success"] == "true"
    assert all(r["spf_correct"] in {"true", "false"} for r in job_rows[:97])  # checked by the job


async def test_a_file_within_one_request_stays_synchronous(
    served: Served, http: httpx.AsyncClient, key: str, credential_id: int, tmp_path: Path
) -> None:
    source = mixed_file(tmp_path / "small.csv", LIMIT)
    result = await run(served, key, *_connect(source, credential_id))  # no engine running: a job would hang
    assert "37 connected, 3 failed, 0 retried" in result.stdout
    assert len(results_of(tmp_path / "small.results.csv")) == LIMIT
    assert await jobs_of(http, key) == []


async def _interrupted(served: Served, key: str, args: list[str], job: Path, signum: int) -> tuple[int, str]:
    """Start the command as a process, send it `signum` once the job file exists; its exit code and
    stderr."""
    process = await asyncio.create_subprocess_exec(
        str(EXECUTABLE),
        *args,
        env=clean_env(**_env(served, key)),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(60):
            while not await asyncio.to_thread(job.exists):
                assert process.returncode is None, "the client ended before starting a job"
                await asyncio.sleep(0.02)
        process.send_signal(signum)
        _, stderr = await asyncio.wait_for(process.communicate(), 60)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, stderr.decode()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "kill-9"])
async def test_an_interrupted_client_resumes_the_same_job(
    served: Served, http: httpx.AsyncClient, key: str, credential_id: int, tmp_path: Path, signum: int
) -> None:
    source = mixed_file(tmp_path / "big.csv", 100)
    target = tmp_path / "big.results.csv"
    args = _connect(source, credential_id, "--poll-interval", "0.1")
    code, stderr = await _interrupted(served, key, args, job_file(target), signum)
    jobs = await jobs_of(http, key)
    assert [j["status"] for j in jobs] == ["QUEUED"]  # not cancelled by the interruption
    if signum == signal.SIGINT:
        assert code == 130
        assert f"job {jobs[0]['job_id']} goes on" in stderr, stderr
        assert "--resume" in stderr
    else:
        assert code == -signal.SIGKILL
    assert not target.exists()

    # Without --resume, a re-run posts the same Idempotency-Key: the same job answers.
    code, _ = await _interrupted(served, key, args, job_file(target), signal.SIGKILL)
    assert len(await jobs_of(http, key)) == 1

    async with working(served.state):
        resumed = await run(served, key, *args, "--resume")
    assert f"job {jobs[0]['job_id']}" in resumed.stdout
    assert "97 connected, 3 failed" in resumed.stdout
    assert [(j["job_id"], j["status"]) for j in await jobs_of(http, key)] == [(jobs[0]["job_id"], "DONE")]
    rows = results_of(target)
    assert [r["mailbox_email"] for r in rows] == [
        line.split(",")[0] for line in source.read_text().splitlines()[1:]
    ]
    assert sum(r["success"] == "true" for r in rows) == 97


async def test_resume_without_a_job_is_a_clear_error(
    served: Served, key: str, credential_id: int, tmp_path: Path
) -> None:
    source = mixed_file(tmp_path / "big.csv", 100)
    result = await run(served, key, *_connect(source, credential_id, "--resume"), exit_code=2)
    assert "no job to follow" in result.output
    assert "run without --resume" in result.output


async def test_a_cancelled_job_is_said_and_what_is_there_is_written(
    served: Served, http: httpx.AsyncClient, key: str, credential_id: int, tmp_path: Path
) -> None:
    source = mixed_file(tmp_path / "big.csv", 100)
    target = tmp_path / "big.results.csv"
    args = _connect(source, credential_id, "--poll-interval", "0.1")
    await _interrupted(served, key, args, job_file(target), signal.SIGKILL)
    (job,) = await jobs_of(http, key)
    cancelled = await http.delete(f"{JOBS}/{job['job_id']}", headers=headers(key))
    assert cancelled.status_code == 200, cancelled.text

    result = await run(served, key, *args, "--resume", exit_code=1)
    assert f"job {job['job_id']} was CANCELLED: 100 rows were not processed" in result.output
    rows = results_of(target)
    assert len(rows) == 100
    assert all(r["success"] == "false" and r["error"] == "" for r in rows)
    assert rows[0]["explanation"].startswith(f"Not processed: job {job['job_id']} was cancelled")
