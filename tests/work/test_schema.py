"""Migration 0007: pgqueuer's own start-up check passes on PostgreSQL; our queue matches its table on
SQLite; the downgrade drops each dialect's queue."""

from __future__ import annotations

import asyncpg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from pgqueuer.adapters.drivers.asyncpg import AsyncpgDriver
from pgqueuer.adapters.persistence.queries import Queries
from pgqueuer.core.qm import QueueManager
from sqlalchemy import inspect
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from m365connect.work.models import PGQUEUER_TABLES, jobs, sqlite_metadata
from m365connect.work.postgres import asyncpg_dsn
from tests.migration_steps import at_revision


async def test_pgqueuers_own_structure_check_passes_after_upgrade_head(
    engine: AsyncEngine, database_url: str, backend: str
) -> None:
    if backend != "postgresql":
        pytest.skip("pgqueuer's schema exists on PostgreSQL only")
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        await QueueManager(Queries(AsyncpgDriver(connection))).verify_structure()  # raises on a drift
    finally:
        await connection.close()


def _diff(connection: Connection) -> list[object]:
    context = MigrationContext.configure(
        connection,
        opts={
            "compare_type": True,
            "include_name": lambda name, type_, _p: type_ != "table" or name == jobs.name,
        },
    )
    return list(compare_metadata(context, sqlite_metadata))


async def test_the_sqlite_queue_table_matches_its_definition(engine: AsyncEngine, backend: str) -> None:
    if backend != "sqlite":
        pytest.skip("work_jobs exists on SQLite only")
    async with engine.connect() as connection:
        assert await connection.run_sync(_diff) == []


async def test_the_downgrade_drops_the_queue_of_each_dialect(engine: AsyncEngine, backend: str) -> None:
    queue_tables = set(PGQUEUER_TABLES) if backend == "postgresql" else {jobs.name}
    async with at_revision(engine, "0006") as connection:
        left = set(await connection.run_sync(lambda sync: inspect(sync).get_table_names()))
        assert not (queue_tables | {"work_schedules"}) & left
    async with engine.connect() as connection:
        back = set(await connection.run_sync(lambda sync: inspect(sync).get_table_names()))
    assert queue_tables | {"work_schedules"} <= back
