"""Migration 0004: credentials stored before national clouds read `cloud: global`; the downgrade drops it."""

from __future__ import annotations

from sqlalchemy import select

from m365connect.credentials.models import GraphCredential
from m365connect.credentials.service import to_read
from m365connect.db.engine import create_engine
from tests.migration_steps import at_revision, columns, downgrade, old_account, old_credential, upgrade


async def test_rows_from_before_read_global_and_the_downgrade_drops_the_column(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        async with at_revision(engine, "0003") as connection:
            assert "cloud" not in await columns(connection, "graph_credentials")
            await old_credential(connection, await old_account(connection))
            await upgrade(connection)
            row = (await connection.execute(select(GraphCredential))).one()
            assert row.cloud == "global"
            assert to_read(GraphCredential(**row._asdict())).cloud == "global"
            await downgrade(connection, "0003")
            assert "cloud" not in await columns(connection, "graph_credentials")
    finally:
        await engine.dispose()
