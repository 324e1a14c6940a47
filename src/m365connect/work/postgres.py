"""The PostgreSQL queue: pgqueuer 1.6 on its own schema (migration 0007), driven through our contract.

Enqueue runs pgqueuer's insert on the asyncpg connection under the caller's SQLAlchemy session, so the
job is part of the caller's transaction; pgqueuer's trigger sends its NOTIFY, which PostgreSQL delivers
at commit (and never for a rollback). The worker is pgqueuer's QueueManager on a connection of its own
(LISTEN needs one): SKIP LOCKED claims, heartbeats at half the lease, and a job whose heartbeat is older
than the lease is picked again by any process (the kill -9 recovery).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta

import asyncpg
from pgqueuer.adapters.drivers.asyncpg import AsyncpgDriver
from pgqueuer.adapters.persistence.queries import Queries
from pgqueuer.core.qm import QueueManager
from pgqueuer.domain.errors import RetryRequested
from pgqueuer.domain.models import Job
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession

from m365connect.work import repository
from m365connect.work.outcome import Outcome
from m365connect.work.ports import JobRun, Payload

logger = logging.getLogger("m365connect.work")

Execute = Callable[[JobRun, Payload], Awaitable[Outcome]]


class GaveUp(Exception):
    """A job failed past its retry schedule: pgqueuer logs it as 'exception' (the cause's type and first
    line only; the handler's traceback and the payload stay out of pgqueuer_log)."""


def asyncpg_dsn(database_url: str) -> str:
    """The plain libpq URL of a `postgresql+asyncpg://` URL, for the worker's own connection."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


class PgQueue:
    """pgqueuer's queue on this database."""

    def __init__(
        self, database_url: str, *, lease_seconds: float, poll_seconds: float, connect_timeout: float
    ):
        self._dsn = asyncpg_dsn(database_url)
        self.lease = timedelta(seconds=lease_seconds)
        self.poll = timedelta(seconds=poll_seconds)
        self.connect_timeout = connect_timeout

    async def enqueue(
        self, session: AsyncSession, kind: str, payload: Payload, *, delay: float, dedupe_key: str | None
    ) -> None:
        """pgqueuer's enqueue on the session's own connection, inside its transaction."""
        await repository.begin_on_server(session)
        raw = await (await session.connection()).get_raw_connection()
        queries = Queries(AsyncpgDriver(raw.driver_connection))
        await queries.enqueue(
            kind,
            json.dumps(dict(payload), separators=(",", ":")).encode(),
            execute_after=timedelta(seconds=max(0.0, delay)),
            dedupe_key=dedupe_key,
            on_conflict="skip",
        )

    async def run(
        self,
        stop: asyncio.Event,
        *,
        kinds: list[str],
        limits: Mapping[str, int],
        concurrency: int,
        execute: Execute,
    ) -> None:
        """pgqueuer's worker loop until `stop`; running jobs finish before it returns (pgqueuer waits).

        `limits` become pgqueuer's per-entrypoint `concurrency_limit`: its dequeue counts the picked jobs
        of the entrypoint in every worker (a capacity seat per picked job), so a cap holds across
        processes. `concurrency` is this process's cap on all kinds (`max_concurrent_tasks`).
        """
        if not kinds:
            await stop.wait()
            return
        connection = await asyncpg.connect(self._dsn, timeout=self.connect_timeout)
        try:
            manager = QueueManager(Queries(AsyncpgDriver(connection)))
            for kind in kinds:
                manager.entrypoint(kind, concurrency_limit=limits.get(kind, 0))(_entrypoint(execute))
            stopper = asyncio.create_task(_relay(stop, manager.shutdown))
            batch = max(1, concurrency // 2)
            try:
                await manager.run(
                    dequeue_timeout=self.poll,
                    batch_size=batch,
                    max_concurrent_tasks=max(concurrency, 2 * batch),
                    heartbeat_timeout=self.lease,
                )
            finally:
                stopper.cancel()
        finally:
            await connection.close()


def _entrypoint(execute: Execute) -> Callable[[Job], Awaitable[None]]:
    async def entrypoint(job: Job) -> None:
        # pgqueuer counts attempts from 0 and raises them on each requested retry.
        run = JobRun(job_id=int(job.id), kind=job.entrypoint, attempt=job.attempts + 1)
        outcome = await execute(run, json.loads(job.payload or b"{}"))
        if outcome.verdict == "retry":
            raise RetryRequested(timedelta(seconds=outcome.delay), reason=outcome.error or None)
        if outcome.verdict == "failed":
            raise GaveUp(outcome.error)

    return entrypoint


async def _relay(stop: asyncio.Event, shutdown: asyncio.Event) -> None:
    await stop.wait()
    shutdown.set()
