"""Steps for migration tests: move a live connection to a revision, read a table's columns, and write rows
as an older revision's schema held them (raw SQL: the models describe the newest schema only)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from alembic import command
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from m365connect.db.base import utcnow
from m365connect.db.migrate import alembic_config


def _run(action: Callable[..., None], revision: str) -> Callable[[Connection], None]:
    def run(connection: Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        action(config, revision)

    return run


async def downgrade(connection: AsyncConnection, revision: str) -> None:
    """Migrate down to `revision` on this connection (inside its transaction)."""
    await connection.run_sync(_run(command.downgrade, revision))


async def upgrade(connection: AsyncConnection, revision: str = "head") -> None:
    """Migrate up to `revision` on this connection."""
    await connection.run_sync(_run(command.upgrade, revision))


@asynccontextmanager
async def at_revision(engine: AsyncEngine, revision: str) -> AsyncIterator[AsyncConnection]:
    """A connection in a transaction on the database migrated down to `revision` (committed when the block
    ends); afterwards the database is back at head whatever happened, as the next tests need it."""
    try:
        async with engine.begin() as connection:
            await downgrade(connection, revision)
            yield connection
    finally:
        async with engine.begin() as connection:
            await upgrade(connection)


async def columns(connection: AsyncConnection, table: str) -> set[str]:
    """The names of the table's columns as the database has them now."""
    return await connection.run_sync(
        lambda sync: {column["name"] for column in inspect(sync).get_columns(table)}
    )


async def old_account(connection: AsyncConnection) -> int:
    """An account row 'acme'; its id."""
    account = await connection.scalar(
        text("INSERT INTO accounts (name, created_at) VALUES ('acme', :now) RETURNING id"), {"now": utcnow()}
    )
    return int(account)


async def old_mailbox(connection: AsyncConnection, account: int, *, dkim_correct: bool) -> None:
    """A DISCONNECTED mailbox row with the columns of revision 0001."""
    await connection.execute(
        text(
            "INSERT INTO mailboxes (account_id, email, microsoft_user_id, status, spf_correct,"
            " dkim_correct, connected_at) VALUES (:account, 'old@contoso.com', 'u-1', 'DISCONNECTED',"
            " true, :dkim, :now)"
        ),
        {"account": account, "dkim": dkim_correct, "now": utcnow()},
    )


async def old_credential(connection: AsyncConnection, account: int) -> None:
    """A credential row with the columns of revision 0001 (a placeholder ciphertext)."""
    await connection.execute(
        text(
            "INSERT INTO graph_credentials (account_id, name, tenant_id, tenant_key, client_id,"
            " secret_ciphertext, secret_expires_at, verification_status, created_at, updated_at)"
            " VALUES (:account, 'old', 'contoso.onmicrosoft.com', 'contoso.onmicrosoft.com',"
            " '2b7e4f1a-9c3d-4e8b-a1f5-6d2c8e0b4a71', :blob, :later, 'VALID', :now, :now)"
        ),
        {"account": account, "blob": b"x", "later": utcnow().replace(year=2030), "now": utcnow()},
    )
