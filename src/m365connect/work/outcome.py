"""What one run of a job comes to, decided the same way on both backends from the kind's schedule."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

from m365connect.work.ports import JobKind, JobRun, Payload, Retry

logger = logging.getLogger("m365connect.work")

Verdict = Literal["done", "retry", "failed"]


@dataclass(frozen=True)
class Outcome:
    """done; retry after `delay` seconds; or failed for good. `error` names the exception (no payload)."""

    verdict: Verdict
    delay: float = 0.0
    error: str = ""


def describe(exc: BaseException) -> str:
    """The exception's type and first line, bounded: for the log and the job row, never the payload."""
    first = (str(exc).splitlines() or [""])[0][:200]
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


async def run_job(kind: JobKind, run: JobRun, payload: Payload) -> Outcome:
    """Run the handler; Retry(delay) asks for a run after delay; any other exception follows the kind's
    `retry_delays` (the delay before attempt n+1 is retry_delays[n-1]) and then gives up."""
    try:
        await kind.handler(run, payload)
    except Retry as retry:
        logger.info(
            "work.job.retry_requested",
            extra={"job_id": run.job_id, "kind": run.kind, "attempt": run.attempt, "delay": retry.delay},
        )
        return Outcome("retry", delay=max(0.0, retry.delay), error=describe(retry))
    except Exception as exc:
        error = describe(exc)
        fields = {"job_id": run.job_id, "kind": run.kind, "attempt": run.attempt, "error": error}
        if run.attempt <= len(kind.retry_delays):
            delay = float(kind.retry_delays[run.attempt - 1])
            logger.warning("work.job.failed", extra={**fields, "retry_in": delay})
            return Outcome("retry", delay=delay, error=error)
        logger.error("work.job.gave_up", extra=fields)
        return Outcome("failed", error=error)
    return Outcome("done")
