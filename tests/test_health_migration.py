"""Migration 0009: rows stored before background verification are OK and unchecked, credentials carry no
announcement or reminder yet, and the downgrade removes the columns and indexes again."""

from __future__ import annotations

from sqlalchemy import inspect, select

from m365connect.credentials.models import GraphCredential
from m365connect.credentials.service import to_read as credential_read
from m365connect.db.engine import create_engine
from m365connect.mailboxes.models import Mailbox
from m365connect.mailboxes.service import to_read as mailbox_read
from tests.migration_steps import at_revision, columns, old_account, old_credential, old_mailbox

HEALTH_COLUMNS = {"health_state", "health_error", "health_checked_at", "failing_since", "next_check_at"}
CREDENTIAL_COLUMNS = {"checked_at", "next_check_at", "announced_status", "reminded_days_left"}


async def test_rows_from_before_are_ok_unchecked_and_unplanned(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        async with at_revision(engine, "0006") as connection:
            assert not HEALTH_COLUMNS & await columns(connection, "mailboxes")
            assert not CREDENTIAL_COLUMNS & await columns(connection, "graph_credentials")
            indexes = await connection.run_sync(lambda sync: inspect(sync).get_indexes("mailboxes"))
            assert not {index["name"] for index in indexes} & {"ix_mailboxes_health_due"}
            account = await old_account(connection)
            await old_mailbox(connection, account, dkim_correct=True)
            await old_credential(connection, account)
        async with engine.connect() as connection:
            mailbox = (await connection.execute(select(Mailbox))).one()
            credential = (await connection.execute(select(GraphCredential))).one()
            indexes = await connection.run_sync(lambda sync: inspect(sync).get_indexes("mailboxes"))
        assert {"ix_mailboxes_health_due", "ix_mailboxes_health_credential_due"} <= {
            i["name"] for i in indexes
        }
        assert (mailbox.health_state, mailbox.next_check_at) == ("OK", None)
        assert mailbox_read(Mailbox(**mailbox._asdict())).health.model_dump() == {
            "state": "OK",
            "error": None,
            "checked_at": None,
            "failing_since": None,
        }
        assert (credential.announced_status, credential.reminded_days_left, credential.next_check_at) == (
            None,
            None,
            None,
        )
        assert credential_read(GraphCredential(**credential._asdict())).checked_at is None
    finally:
        await engine.dispose()
