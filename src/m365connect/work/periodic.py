"""Periodic tasks: each period's run is won by one process with a compare-and-set on work_schedules.

Every process looks at each schedule every `tick` seconds; the one whose update moves `next_run_ms` from
the value it read wins the run. A run is not retried: a failure is logged and the next period runs.
A process that dies mid-run loses that period's run (periodic tasks are sweeps that the next run redoes).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from m365connect.work import repository
from m365connect.work.outcome import describe
from m365connect.work.ports import PeriodicHandler

logger = logging.getLogger("m365connect.work")

Observe = Callable[[str, str], None]


@dataclass(frozen=True)
class Periodic:
    """A task to run once every `seconds` across all processes."""

    name: str
    seconds: float
    handler: PeriodicHandler


async def claim_run(engine: AsyncEngine, task: Periodic) -> bool:
    """Whether this process won the task's due run (and moved the schedule to the next one)."""
    now = repository.now_ms()
    period = max(1, round(task.seconds * 1000))
    async with engine.begin() as connection:
        due = await repository.schedule_due(connection, name=task.name, first_run_ms=now)
        if due > now:
            return False
        # Catching up after a pause runs once, not once per missed period.
        following = due + period if due + period > now else now + period
        return await repository.schedule_advance(connection, name=task.name, seen_ms=due, next_ms=following)


async def run_periodic(
    engine: AsyncEngine, tasks: list[Periodic], stop: asyncio.Event, *, tick: float, observe: Observe
) -> None:
    """Until `stop`: every tick, run the tasks this process wins (one at a time per task)."""
    running: dict[str, asyncio.Task[None]] = {}
    while not stop.is_set():
        for task in tasks:
            if task.name in running and not running[task.name].done():
                continue
            try:
                won = await claim_run(engine, task)
            except Exception as exc:  # the database is away: the next tick tries again
                logger.warning(
                    "work.periodic.claim_failed", extra={"task": task.name, "error": describe(exc)}
                )
                continue
            if won:
                running[task.name] = asyncio.create_task(_run(task, observe))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=tick)
    if running:
        await asyncio.gather(*running.values(), return_exceptions=True)


async def _run(task: Periodic, observe: Observe) -> None:
    try:
        await task.handler()
    except Exception as exc:
        logger.error("work.periodic.failed", extra={"task": task.name, "error": describe(exc)})
        observe(task.name, "failed")
        return
    observe(task.name, "done")
