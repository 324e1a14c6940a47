"""Connect a file larger than one request as ONE bulk job (API.md 7): start it with an Idempotency-Key
derived from the file's content and the credential, remember its id beside the results file, follow it,
then read its results pages back into one result per row, in row order.

Re-running the same command posts the same body with the same key, which the service answers with the same
job (within 24 hours), so a job is never started twice; `--resume` follows the remembered job without
posting at all.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from m365connect.client.bulk import OnProgress, Progress, account_of
from m365connect.client.csv_io import InputRow
from m365connect.client.errors import ApiError, InputError
from m365connect.client.http import ItemResult, ServiceClient, Sleep

RESULTS_PAGE_SIZE = 500  # the service's results page (API.md 7)
FINISHED = frozenset({"DONE", "CANCELLED"})
KEY_PREFIX = "m365connect-cli-"


def idempotency_key(accounts: Sequence[dict[str, str]], credential_id: int | None) -> str:
    """The same rows and credential give the same key (a SHA-256 of what is sent; nothing secret)."""
    material = json.dumps({"accounts": list(accounts), "credential_id": credential_id}, sort_keys=True)
    return KEY_PREFIX + hashlib.sha256(material.encode("utf-8")).hexdigest()


def job_file(results: Path) -> Path:
    """Where the job id is remembered: beside the results file, `<results>.job`."""
    return results.with_name(f"{results.name}.job")


@dataclass(frozen=True)
class Remembered:
    """The job a previous run started."""

    job_id: int
    url: str
    idempotency_key: str


def remember(path: Path, job: Remembered) -> None:
    """Write the job file (replaced atomically: a crash leaves the old one or the new one)."""
    temporary = path.with_name(f"{path.name}.tmp")
    temporary.write_text(
        json.dumps({"job_id": job.job_id, "url": job.url, "idempotency_key": job.idempotency_key}) + "\n",
        encoding="utf-8",
    )
    temporary.replace(path)


def recall(path: Path) -> Remembered:
    """The remembered job; InputError when there is none or it is unreadable."""
    try:
        data: Any = json.loads(path.read_text(encoding="utf-8"))
        return Remembered(
            job_id=int(data["job_id"]), url=str(data["url"]), idempotency_key=str(data["idempotency_key"])
        )
    except FileNotFoundError:
        raise InputError(
            f"--resume: no job to follow ({path} does not exist); run without --resume"
        ) from None
    except (ValueError, KeyError, TypeError):
        raise InputError(f"--resume: {path} is not a job file; delete it and run without --resume") from None


@dataclass
class Outcome:
    """What a followed job gave: one result per row (None where a cancelled job never got to it)."""

    job_id: int
    status: str
    results: list[ItemResult | None]


OnStarted = Callable[[int], None]


@dataclass(frozen=True)
class JobRun:
    """How to run one file as a job."""

    client: ServiceClient
    rows: Sequence[InputRow]
    credential_id: int | None
    results_path: Path
    poll_interval: float = 1.0
    sleep: Sleep = time.sleep

    def start_or_resume(self, *, resume: bool, on_started: OnStarted | None = None) -> int:
        """The job's id: the remembered one with `resume`, else the one the POST answers (remembered at
        once, before anything else can fail); `on_started` is told as soon as it is known."""
        path = job_file(self.results_path)
        if resume:
            remembered = recall(path)
            if remembered.url != self.client.url:
                started = f"job {remembered.job_id} was started on {remembered.url}"
                raise InputError(f"--resume: {started}, not {self.client.url}")
            if on_started is not None:
                on_started(remembered.job_id)
            return remembered.job_id
        accounts = [account_of(row) for row in self.rows]
        key = idempotency_key(accounts, self.credential_id)
        job = self.client.start_job(accounts, credential_id=self.credential_id, idempotency_key=key)
        job_id = int(job["job_id"])
        remember(path, Remembered(job_id=job_id, url=self.client.url, idempotency_key=key))
        if on_started is not None:
            on_started(job_id)
        return job_id

    def follow(self, job_id: int, progress: Progress, on_progress: OnProgress | None = None) -> Outcome:
        """Poll the job until it is DONE or CANCELLED, feeding `progress`; then its results."""
        while True:
            job = self.client.get_job(job_id)
            if int(job["total"]) != len(self.rows):
                raise ApiError(
                    200, f"job {job_id} has {job['total']} items but the file has {len(self.rows)} rows"
                )
            progress.connected = int(job["connected"])
            progress.failed = int(job["failed"])
            if on_progress is not None:
                on_progress(progress)
            if job["status"] in FINISHED:
                break
            self.sleep(self.poll_interval)
        return Outcome(job_id=job_id, status=str(job["status"]), results=self.results(job_id))

    def results(self, job_id: int) -> list[ItemResult | None]:
        """Every results page, placed by `index`."""
        results: list[ItemResult | None] = [None] * len(self.rows)
        pages = (len(self.rows) + RESULTS_PAGE_SIZE - 1) // RESULTS_PAGE_SIZE
        for page in range(pages):
            for item in self.client.job_results(job_id, page)["content"]:
                index = item.get("index")
                if not isinstance(index, int) or not 0 <= index < len(results):
                    raise ApiError(200, f"job {job_id}: a result with index {index!r} out of range")
                results[index] = ItemResult.from_wire(item)
        return results
