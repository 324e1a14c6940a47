"""Alembic migrations are the only schema source: they must match the models exactly."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection

from m365connect.db.engine import create_engine
from m365connect.db.models import metadata
from m365connect.work.models import engine_owned


def _diff(connection: Connection) -> list[object]:
    # The work queue's tables (pgqueuer's on PostgreSQL, work_jobs on SQLite) are compared in tests/work.
    def include_name(name: str | None, type_: str, _parent: object) -> bool:
        return not (type_ == "table" and engine_owned(name))

    context = MigrationContext.configure(
        connection, opts={"compare_type": True, "include_name": include_name}
    )
    return list(compare_metadata(context, metadata))


async def test_migrated_schema_matches_the_models(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            differences = await connection.run_sync(_diff)
    finally:
        await engine.dispose()
    assert differences == []
