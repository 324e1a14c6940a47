"""The embedded default's queue: our own small adapter on the SQLite file (docs/decisions.md).

One loop per process claims due jobs up to the free slots (`repository.sqlite_claim`), runs each as a
task, renews the leases of running jobs every third of a lease, and records each outcome naming its
owner. A process killed mid-job leaves a lease that runs out; another process then claims the job again.
Wake-ups: an enqueue committed in this process, a finished job, or the poll interval (other processes).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import Session

from m365connect.work import repository
from m365connect.work.outcome import Outcome
from m365connect.work.ports import JobRun, Payload

logger = logging.getLogger("m365connect.work")

Execute = Callable[[JobRun, Payload], Awaitable[Outcome]]


class SqliteQueue:
    """The work_jobs table of one SQLite file, used by this process under one owner id."""

    def __init__(self, engine: AsyncEngine, *, lease_seconds: float, poll_seconds: float) -> None:
        self.engine = engine
        self.owner = uuid.uuid4().hex
        self.lease_ms = round(lease_seconds * 1000)
        self.poll_seconds = poll_seconds
        self._wake = asyncio.Event()

    async def enqueue(
        self, session: AsyncSession, kind: str, payload: Payload, *, delay: float, dedupe_key: str | None
    ) -> None:
        """Insert into the caller's transaction; this process's loop looks as soon as it commits."""
        await repository.sqlite_enqueue(
            session, kind=kind, payload=payload, delay=delay, dedupe_key=dedupe_key
        )
        if delay <= 0:
            event.listen(session.sync_session, "after_commit", self._on_commit, once=True)

    def _on_commit(self, _session: Session) -> None:
        self._wake.set()

    async def run(
        self,
        stop: asyncio.Event,
        *,
        kinds: list[str],
        limits: Mapping[str, int],
        concurrency: int,
        execute: Execute,
    ) -> None:
        """Claim and run jobs until `stop`; then let running jobs finish (or release them if cancelled).

        `concurrency` caps this process's running jobs; `limits` caps kinds across all processes (the
        claim counts the kind's running jobs with a live lease, whoever holds them).
        """
        running: dict[int, asyncio.Task[None]] = {}
        heartbeat = asyncio.create_task(self._heartbeat(running))
        try:
            while not stop.is_set():
                self._wake.clear()
                free = concurrency - len(running)
                if free > 0 and kinds:
                    for job in await self._claim(kinds, limits, free):
                        task = asyncio.create_task(self._run_one(job, execute))
                        task.add_done_callback(functools.partial(self._done, running, job.id))
                        running[job.id] = task
                if len(running) < concurrency and self._wake.is_set():
                    continue
                await _first(stop.wait(), self._wake.wait(), seconds=self.poll_seconds)
            if running:
                await asyncio.gather(*running.values(), return_exceptions=True)
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat

    def _done(self, running: dict[int, asyncio.Task[None]], job_id: int, _task: object) -> None:
        running.pop(job_id, None)
        self._wake.set()

    async def _claim(
        self, kinds: list[str], limits: Mapping[str, int], limit: int
    ) -> list[repository.ClaimedJob]:
        try:
            async with self.engine.begin() as connection:
                return await repository.sqlite_claim(
                    connection,
                    owner=self.owner,
                    kinds=kinds,
                    limit=limit,
                    lease_ms=self.lease_ms,
                    limits=limits,
                )
        except Exception as exc:  # a locked or unreachable file: try again at the next poll
            logger.warning("work.claim.failed", extra={"error": type(exc).__name__})
            return []

    async def _run_one(self, job: repository.ClaimedJob, execute: Execute) -> None:
        run = JobRun(job_id=job.id, kind=job.kind, attempt=job.attempts)
        try:
            outcome = await execute(run, json.loads(job.payload))
        except asyncio.CancelledError:
            # Stopped before it finished: back to the queue at once, this run not counted.
            await asyncio.shield(self._record(job.id, Outcome("retry"), uncount=True))
            raise
        await self._record(job.id, outcome)

    async def _record(self, job_id: int, outcome: Outcome, *, uncount: bool = False) -> None:
        try:
            await self._write_outcome(job_id, outcome, uncount=uncount)
        except Exception as exc:  # the job stays claimed: its lease runs out and it runs again
            logger.error(
                "work.outcome_unsaved",
                extra={"job_id": job_id, "verdict": outcome.verdict, "error": type(exc).__name__},
            )

    async def _write_outcome(self, job_id: int, outcome: Outcome, *, uncount: bool) -> None:
        async with self.engine.begin() as connection:
            if outcome.verdict == "done":
                await repository.sqlite_finish(connection, job_id=job_id, owner=self.owner)
            elif outcome.verdict == "retry":
                await repository.sqlite_reschedule(
                    connection,
                    job_id=job_id,
                    owner=self.owner,
                    delay=outcome.delay,
                    error=outcome.error,
                    uncount=uncount,
                )
            else:
                await repository.sqlite_give_up(
                    connection, job_id=job_id, owner=self.owner, error=outcome.error
                )

    async def _heartbeat(self, running: dict[int, asyncio.Task[None]]) -> None:
        interval = self.lease_ms / 3000
        while True:
            await asyncio.sleep(interval)
            if not running:
                continue
            try:
                async with self.engine.begin() as connection:
                    await repository.sqlite_heartbeat(
                        connection, owner=self.owner, ids=list(running), lease_ms=self.lease_ms
                    )
            except Exception as exc:  # the next beat tries again; a lease has three beats to run out
                logger.warning("work.heartbeat.failed", extra={"error": type(exc).__name__})


async def _first(*waits: Awaitable[object], seconds: float) -> None:
    """Wait until one of `waits` completes or `seconds` pass; cancel the others."""
    tasks = [asyncio.ensure_future(wait) for wait in waits]
    try:
        await asyncio.wait(tasks, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
