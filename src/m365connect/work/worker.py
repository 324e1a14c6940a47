"""`m365connect worker`: the background work alone, until SIGTERM or SIGINT.

The first signal stops taking jobs and lets the running ones finish (pgqueuer and the SQLite queue both
wait for them); a second signal exits at once, and the jobs still running are taken over by another
process when their lease runs out (M365CONNECT_WORK_LEASE_SECONDS): nothing is lost either way.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable

from m365connect.settings import Settings
from m365connect.state import open_state
from m365connect.work.engine import Work

logger = logging.getLogger("m365connect.worker")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
EXIT_AT_ONCE = 128 + signal.SIGTERM  # a second signal: the status a process killed by SIGTERM has


async def run_worker(settings: Settings, *, setup: Callable[[Work], None] | None = None) -> None:
    """Build the state, run its background work until a stop signal, and close what it opened.

    `setup` registers more job kinds before the loop starts (the test suite's worker processes).
    """
    async with open_state(settings) as state:
        if setup is not None:
            setup(state.work)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def stop_once(signum: signal.Signals) -> None:
            if stop.is_set():
                logger.warning("worker.exiting_now", extra={"signal": signum.name})
                os._exit(EXIT_AT_ONCE)  # leases run out; other processes take the jobs over
            logger.info("worker.stopping", extra={"signal": signum.name})
            stop.set()

        for signum in STOP_SIGNALS:
            loop.add_signal_handler(signum, stop_once, signum)
        logger.info(
            "worker.started",
            extra={
                "backend": state.work.backend,
                "kinds": sorted(state.work.kinds),
                "periodic": sorted(state.work.periodic),
                "concurrency": settings.work_concurrency,
            },
        )
        try:
            await state.work.run(stop)
        finally:
            for signum in STOP_SIGNALS:
                loop.remove_signal_handler(signum)
        logger.info("worker.stopped")
