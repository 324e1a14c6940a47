"""A worker process of the tests: `m365connect worker`'s own loop (run_worker) with the recording kind.

Run as `python -m tests.work.worker_main` with the M365CONNECT_* environment of a worker;
TEST_RECORD_CONCURRENCY (when set) caps the recording kind across processes.
"""

from __future__ import annotations

import asyncio
import os

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
        cap = os.environ.get("TEST_RECORD_CONCURRENCY")
        kind = recording_kind(engine, concurrency=int(cap) if cap else None)
        await run_worker(settings, setup=lambda work: work.register(kind))
    finally:
        await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
