"""Migration 0002: mailboxes connected before the DMARC check read `dmarc_correct: null` ("not checked")."""

from __future__ import annotations

import httpx
from sqlalchemy import select, update

from m365connect.db.engine import create_engine
from m365connect.mailboxes.models import Mailbox
from m365connect.mailboxes.service import to_read
from m365connect.state import AppState
from tests.factories import MAILBOXES, bulk, create_credential
from tests.helpers import headers
from tests.migration_steps import at_revision, columns, old_account, old_mailbox


async def test_rows_from_before_read_null_and_the_downgrade_drops_the_column(database_url: str) -> None:
    engine = create_engine(database_url)
    async with at_revision(engine, "0001") as connection:
        assert "dmarc_correct" not in await columns(connection, "mailboxes")
        await old_mailbox(connection, await old_account(connection), dkim_correct=False)
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
