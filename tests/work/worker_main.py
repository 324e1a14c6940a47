"""A worker process of the tests: `m365connect worker`'s own loop (run_worker) with the recording kind.

Run as `python -m tests.work.worker_main` with the M365CONNECT_* environment of a worker.
"""

from __future__ import annotations

import asyncio

from m365connect.db.engine import create_engine
from m365connect.observability import configure_logging
from m365connect.settings import Settings
from m365connect.work.worker import run_worker
from tests.work.helpers import recording_kind


async def main() -> None:
    settings = Settings()
    configure_logging(settings)
    engine = create_engine(settings.database_url)
    try:
        await run_worker(settings, setup=lambda work: work.register(recording_kind(engine)))
    finally:
        await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
