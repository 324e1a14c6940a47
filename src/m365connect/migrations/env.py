"""Alembic environment: runs on the connection handed in by `m365connect.db.migrate`, or on the URL in
`M365CONNECT_DATABASE_URL` when started from the `alembic` command line."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from m365connect.db.engine import create_engine
from m365connect.db.models import metadata
from m365connect.settings import Settings
from m365connect.work.models import engine_owned


def _include_name(name: str | None, type_: str, _parent: object) -> bool:
    """The work queue's tables exist on one dialect each and are no model's: autogenerate leaves them."""
    return not (type_ == "table" and engine_owned(name))


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection, target_metadata=metadata, render_as_batch=True, include_name=_include_name
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_from_url() -> None:
    engine = create_engine(Settings().database_url)
    async with engine.connect() as connection:
        await connection.run_sync(_run)
        await connection.commit()
    await engine.dispose()


given = context.config.attributes.get("connection")
if given is not None:
    _run(given)
else:
    asyncio.run(_run_from_url())
