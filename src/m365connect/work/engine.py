"""The background work engine: `Work`, built from the database URL (pgqueuer on PostgreSQL, our small
queue on SQLite), with one contract (m365connect.work.ports) and one conformance suite (tests/work/).

Delivery is at least once: a job whose process died mid-run runs again after its lease, so every
handler must be idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
from collections.abc import Sequence
from typing import Protocol

from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from m365connect.work import repository
from m365connect.work.outcome import Outcome, describe, run_job
from m365connect.work.periodic import Periodic, run_periodic
from m365connect.work.ports import JobKind, JobRun, Payload, PeriodicHandler
from m365connect.work.postgres import PgQueue
from m365connect.work.repository import KindStats
from m365connect.work.sqlite import SqliteQueue

logger = logging.getLogger("m365connect.work")

MAX_KIND_LENGTH = 100
MAX_DEDUPE_KEY_LENGTH = 255
# After the loop itself fails (the database went away), the pause before it starts again, growing to
# the last value.
RESTART_DELAYS = (1.0, 2.0, 5.0, 10.0, 30.0)
# The built-in periodic task: failed jobs and pgqueuer's log are kept this long, looked at this often.
PRUNE_TASK, PRUNE_EVERY_SECONDS, KEEP_SECONDS = "work.prune", 3600.0, 30 * 86400.0


class WorkObserver(Protocol):
    """Told each outcome: `done`, `retried` or `failed` per job kind (periodic tasks by name)."""

    def ran(self, kind: str, outcome: str) -> None: ...


class _Unobserved:
    def ran(self, kind: str, outcome: str) -> None:
        pass


_OUTCOME_NAMES = {"done": "done", "retry": "retried", "failed": "failed"}


class Work:
    """Enqueue jobs in a caller's transaction; run registered kinds and periodic tasks in `run`."""

    def __init__(
        self,
        *,
        engine: AsyncEngine,
        queue: SqliteQueue | PgQueue,
        concurrency: int,
        periodic_tick: float,
        observer: WorkObserver | None = None,
    ) -> None:
        self.engine = engine
        self.queue = queue
        self.concurrency = concurrency
        self.periodic_tick = periodic_tick
        self.observer: WorkObserver = observer or _Unobserved()
        self.kinds: dict[str, JobKind] = {}
        self.periodic: dict[str, Periodic] = {}
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    @property
    def backend(self) -> str:
        """`postgresql` (pgqueuer) or `sqlite` (work_jobs)."""
        return "postgresql" if isinstance(self.queue, PgQueue) else "sqlite"

    async def enqueue(
        self,
        session: AsyncSession,
        kind: str,
        payload: Payload,
        *,
        delay: float = 0.0,
        dedupe_key: str | None = None,
    ) -> None:
        """Add a job to the session's transaction (see ports.Enqueue); a bad argument is a ValueError."""
        if not kind or len(kind) > MAX_KIND_LENGTH:
            raise ValueError(f"a job kind is 1 to {MAX_KIND_LENGTH} characters")
        if dedupe_key is not None and not 0 < len(dedupe_key) <= MAX_DEDUPE_KEY_LENGTH:
            raise ValueError(f"a dedupe key is 1 to {MAX_DEDUPE_KEY_LENGTH} characters")
        if not (math.isfinite(delay) and delay >= 0):
            raise ValueError("delay must be a finite number of seconds >= 0")
        try:
            json.dumps(dict(payload))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"a job payload must be JSON: {exc}") from None
        await self.queue.enqueue(session, kind, payload, delay=delay, dedupe_key=dedupe_key)

    async def live_keys(self, session: AsyncSession, keys: Sequence[str]) -> set[str]:
        """Which of these dedupe keys a job still holds, waiting (retries included) or running (a lease
        whose process died included, until another process takes it over): see ports.LiveKeys."""
        if not keys:
            return set()
        if self.backend == "postgresql":
            return await repository.pgqueuer_live_keys(session, keys=keys)
        return await repository.sqlite_live_keys(session, keys=keys)

    def register(self, kind: JobKind) -> None:
        """Run jobs of this kind in this process's `run` (register before it starts)."""
        if kind.name in self.kinds:
            raise ValueError(f"job kind {kind.name!r} is registered already")
        if not all(math.isfinite(delay) and delay >= 0 for delay in kind.retry_delays):
            raise ValueError("retry delays are seconds >= 0")
        if kind.concurrency is not None and not (isinstance(kind.concurrency, int) and kind.concurrency >= 1):
            raise ValueError("a kind's concurrency is a whole number >= 1 (or None: no cap of its own)")
        self.kinds[kind.name] = kind

    @property
    def limits(self) -> dict[str, int]:
        """The registered kinds' own caps (jobs running at once across all processes), capped kinds only."""
        return {name: kind.concurrency for name, kind in self.kinds.items() if kind.concurrency is not None}

    def every(self, name: str, seconds: float, handler: PeriodicHandler) -> None:
        """Run `handler` once every `seconds` across all processes that register it."""
        if name in self.periodic:
            raise ValueError(f"periodic task {name!r} is registered already")
        if not seconds > 0:
            raise ValueError("a period is a number of seconds > 0")
        self.periodic[name] = Periodic(name=name, seconds=seconds, handler=handler)

    async def execute(self, run: JobRun, payload: Payload) -> Outcome:
        """One run of a job of a registered kind, its outcome counted."""
        outcome = await run_job(self.kinds[run.kind], run, payload)
        self.observer.ran(run.kind, _OUTCOME_NAMES[outcome.verdict])
        return outcome

    async def run(self, stop: asyncio.Event) -> None:
        """The worker loop and the periodic tasks until `stop` is set; running jobs finish first."""
        tasks = [asyncio.create_task(self._supervise(stop))]
        if self.periodic:
            tasks.append(
                asyncio.create_task(
                    run_periodic(
                        self.engine,
                        list(self.periodic.values()),
                        stop,
                        tick=self.periodic_tick,
                        observe=self.observer.ran,
                    )
                )
            )
        await asyncio.gather(*tasks)

    async def _supervise(self, stop: asyncio.Event) -> None:
        failures = 0
        while not stop.is_set():
            try:
                await self.queue.run(
                    stop,
                    kinds=sorted(self.kinds),
                    limits=self.limits,
                    concurrency=self.concurrency,
                    execute=self.execute,
                )
                return
            except Exception as exc:
                delay = RESTART_DELAYS[min(failures, len(RESTART_DELAYS) - 1)]
                failures += 1
                logger.error("work.loop.failed", extra={"error": describe(exc), "restart_in": delay})
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=delay)

    async def stats(self) -> list[KindStats]:
        """Per kind: jobs waiting, running and failed, and the wait of the oldest due job."""
        async with self._sessions() as session:
            if self.backend == "postgresql":
                return await repository.pgqueuer_stats(session)
            return await repository.sqlite_stats(session)


def build_work(
    database_url: str,
    *,
    engine: AsyncEngine,
    lease_seconds: float,
    poll_seconds: float,
    concurrency: int,
    connect_timeout: float = 5.0,
    observer: WorkObserver | None = None,
) -> Work:
    """The engine for this database: pgqueuer on PostgreSQL, the work_jobs queue on SQLite."""
    queue: SqliteQueue | PgQueue
    if make_url(database_url).get_backend_name() == "postgresql":
        queue = PgQueue(
            database_url,
            lease_seconds=lease_seconds,
            poll_seconds=poll_seconds,
            connect_timeout=connect_timeout,
        )
    else:
        queue = SqliteQueue(engine, lease_seconds=lease_seconds, poll_seconds=poll_seconds)
    work = Work(
        engine=engine,
        queue=queue,
        concurrency=concurrency,
        periodic_tick=min(1.0, poll_seconds),
        observer=observer,
    )

    async def prune() -> None:
        async with engine.begin() as connection:
            removed = await repository.prune(connection, keep_seconds=KEEP_SECONDS)
        logger.info("work.pruned", extra={"removed": removed})

    work.every(PRUNE_TASK, PRUNE_EVERY_SECONDS, prune)
    return work
