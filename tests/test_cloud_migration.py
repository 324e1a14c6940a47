"""Migration 0004: credentials stored before national clouds read `cloud: global`; the downgrade drops it."""

from __future__ import annotations

from collections.abc import Callable

from alembic import command
from sqlalchemy import inspect, select, text
from sqlalchemy.engine import Connection

from m365connect.credentials.models import GraphCredential
from m365connect.credentials.service import to_read
from m365connect.db.base import utcnow
from m365connect.db.engine import create_engine
from m365connect.db.migrate import alembic_config


def _migrate(action: Callable[..., None], revision: str) -> Callable[[Connection], None]:
    def run(connection: Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        action(config, revision)

    return run


def _columns(connection: Connection) -> set[str]:
    return {column["name"] for column in inspect(connection).get_columns("graph_credentials")}


async def test_rows_from_before_read_global_and_the_downgrade_drops_the_column(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_migrate(command.downgrade, "0003"))
            assert "cloud" not in await connection.run_sync(_columns)
            account = await connection.scalar(
                text("INSERT INTO accounts (name, created_at) VALUES ('acme', :now) RETURNING id"),
                {"now": utcnow()},
            )
            await connection.execute(
                text(
                    "INSERT INTO graph_credentials (account_id, name, tenant_id, tenant_key, client_id,"
                    " secret_ciphertext, secret_expires_at, verification_status, created_at, updated_at)"
                    " VALUES (:account, 'old', 'contoso.onmicrosoft.com', 'contoso.onmicrosoft.com',"
                    " '2b7e4f1a-9c3d-4e8b-a1f5-6d2c8e0b4a71', :blob, :later, 'VALID', :now, :now)"
                ),
                {"account": account, "blob": b"x", "later": utcnow().replace(year=2030), "now": utcnow()},
            )
            await connection.run_sync(_migrate(command.upgrade, "head"))
            row = (await connection.execute(select(GraphCredential))).one()
            assert row.cloud == "global"
            assert to_read(GraphCredential(**row._asdict())).cloud == "global"
            await connection.run_sync(_migrate(command.downgrade, "0003"))
            assert "cloud" not in await connection.run_sync(_columns)
    finally:
        async with engine.begin() as connection:  # back to head whatever happened: later tests need it
            await connection.run_sync(_migrate(command.upgrade, "head"))
        await engine.dispose()
