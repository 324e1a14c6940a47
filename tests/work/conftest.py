"""Fixtures of the work engine's tests: both backends, the PostgreSQL queue emptied after each test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import truncate
from tests.work.helpers import PG_WORK_TABLES, drop_runs_table, work_engine


@pytest.fixture
async def engine(database_url: str, backend: str) -> AsyncIterator[AsyncEngine]:
    """An engine on a clean database of this backend, with the runs table."""
    async with work_engine(database_url) as built:
        if backend == "postgresql":
            await truncate(database_url, PG_WORK_TABLES)
        yield built
    if backend == "postgresql":
        await truncate(database_url, PG_WORK_TABLES)
        await drop_runs_table(database_url)  # no model has it: the schema comparison would see it
