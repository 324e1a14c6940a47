"""What the rest of the service sees of the background work engine: the contract, not the engine.

Health checks, webhook deliveries and bulk jobs are written against these names only; the engine
(m365connect.work.engine) implements them on PostgreSQL and on the embedded SQLite default.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

# A job's payload: small, JSON-ready (ids and flags, never a secret).
Payload = Mapping[str, Any]


class Enqueue(Protocol):
    """Adds a job to the caller's transaction: it exists exactly when that transaction commits.

    `delay` (seconds) defers its first run; `dedupe_key` makes the call a no-op while a job with the
    same key is still waiting or running (a finished job no longer blocks its key).
    """

    async def __call__(
        self,
        session: AsyncSession,
        kind: str,
        payload: Payload,
        *,
        delay: float = 0.0,
        dedupe_key: str | None = None,
    ) -> None: ...


class LiveKeys(Protocol):
    """Which of these dedupe keys a job still holds (waiting, retrying or running), read in the caller's
    session: a key not among them has no job, so enqueueing it again starts one."""

    async def __call__(self, session: AsyncSession, keys: Sequence[str]) -> set[str]: ...


class Retry(Exception):
    """Raised by a job to be run again after `delay` seconds, outside its kind's retry schedule."""

    def __init__(self, delay: float, reason: str = "") -> None:
        super().__init__(reason or f"retry in {delay:g} s")
        self.delay = delay


@dataclass(frozen=True)
class JobRun:
    """One run of one job: which job, and how many times it has been started (1 on the first run)."""

    job_id: int
    kind: str
    attempt: int


# A job handler: raising anything but Retry retries it on its kind's schedule, then gives up (logged).
JobHandler = Callable[[JobRun, Payload], Awaitable[None]]
# A periodic task: run once per period across all processes.
PeriodicHandler = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class JobKind:
    """A kind of job and its retry schedule (seconds before attempt 2, 3, ...; empty: never retried).

    `concurrency`: at most this many jobs of the kind run at once, counted across every process on the
    database (None: only the engine's own limit per process, M365CONNECT_WORK_CONCURRENCY). A cap below
    the engine's limit keeps the rest of each process's slots for the other kinds.
    """

    name: str
    handler: JobHandler
    retry_delays: Sequence[float] = ()
    concurrency: int | None = None
