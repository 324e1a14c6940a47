"""Migration 0002: mailboxes connected before the DMARC check read `dmarc_correct: null` ("not checked")."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from alembic import command
from sqlalchemy import inspect, select, text, update
from sqlalchemy.engine import Connection

from m365connect.db.base import utcnow
from m365connect.db.engine import create_engine
from m365connect.db.migrate import alembic_config
from m365connect.mailboxes.models import Mailbox
from m365connect.mailboxes.service import to_read
from m365connect.state import AppState
from tests.factories import MAILBOXES, bulk, create_credential
from tests.helpers import headers


def _migrate(action: Callable[..., None], revision: str) -> Callable[[Connection], None]:
    def run(connection: Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        action(config, revision)

    return run


def _columns(connection: Connection) -> set[str]:
    return {column["name"] for column in inspect(connection).get_columns("mailboxes")}


async def test_rows_from_before_read_null_and_the_downgrade_drops_the_column(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_migrate(command.downgrade, "0001"))
            assert "dmarc_correct" not in await connection.run_sync(_columns)
            account = await connection.scalar(
                text("INSERT INTO accounts (name, created_at) VALUES ('acme', :now) RETURNING id"),
                {"now": utcnow()},
            )
            await connection.execute(
                text(
                    "INSERT INTO mailboxes (account_id, email, microsoft_user_id, status, spf_correct,"
                    " dkim_correct, connected_at) VALUES (:account, 'old@contoso.com', 'u-1', 'DISCONNECTED',"
                    " true, false, :now)"
                ),
                {"account": account, "now": utcnow()},
            )
    finally:
        async with engine.begin() as connection:  # back to head whatever happened: later tests need it
            await connection.run_sync(_migrate(command.upgrade, "head"))
    try:
        async with engine.connect() as connection:
            mailbox = (await connection.execute(select(Mailbox))).one()
            assert mailbox.dmarc_correct is None
        read = to_read(Mailbox(**mailbox._asdict()))
        assert read.deliverability.model_dump() == {
            "spf_correct": True,
            "dkim_correct": False,
            "dmarc_correct": None,
        }
    finally:
        await engine.dispose()


async def test_an_older_mailbox_stays_null_on_a_re_add(
    client: httpx.AsyncClient, api_key: str, state: AppState
) -> None:
    """A re-add answers the stored flags (Graph and DNS are not asked again): null stays null."""
    await create_credential(client, api_key=api_key)
    first = (await bulk(client, api_key=api_key, emails=["jim@contoso.com"])).json()[0]
    assert first["deliverability"]["dmarc_correct"] is True
    async with state.sessions() as session:  # as migration 0002 leaves a row connected before it
        await session.execute(update(Mailbox).values(dmarc_correct=None))
        await session.commit()
    again = (await bulk(client, api_key=api_key, emails=["jim@contoso.com"])).json()[0]
    assert again["already_connected"] is True
    assert again["deliverability"] == {
        "spf_correct": True,
        "dkim_correct": True,
        "dmarc_correct": None,
        # The stored flags of a re-add come without reasons (they are not stored).
        "spf_reason": None,
        "dkim_reason": None,
        "dmarc_reason": None,
    }
    read = await client.get(f"{MAILBOXES}/{first['id']}", headers=headers(api_key))
    assert read.json()["deliverability"]["dmarc_correct"] is None
