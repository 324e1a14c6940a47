"""Mailbox types (issue 10 item 1, API.md §3): shared mailboxes connect, rooms do not, end to end.

Through the real ASGI stack, the simulator's Graph (examples/scenario.yaml) and both databases.
"""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import select

from m365connect.db.engine import create_engine
from m365connect.mailboxes.models import Mailbox
from m365connect.simulator import FakeMicrosoft
from m365connect.state import AppState
from tests import scenario_values as sv
from tests.factories import MAILBOXES, bulk, create_credential
from tests.helpers import headers
from tests.migration_steps import at_revision, columns, old_account, old_mailbox

KINDS = [
    "jim@contoso.com",  # user mailbox
    "sales@contoso.com",  # shared, sign-in blocked, no licence: as Exchange creates it
    "accounting@contoso.com",  # shared, sign-in left enabled
    "toby@contoso.com",  # user mailbox, sign-in blocked
    "conference-room@contoso.com",  # room, sign-in blocked
    "sales@contoso.onmicrosoft.com",  # the shared mailbox's alias
]


def outcomes(results: list[dict[str, Any]]) -> dict[str, tuple[bool, str | None, str | None]]:
    return {item["email"]: (item["success"], item["error"], item["mailbox_type"]) for item in results}


async def test_each_mailbox_type_gets_its_answer_and_the_type_is_stored(
    client: httpx.AsyncClient, api_key: str, state: AppState, microsoft: FakeMicrosoft
) -> None:
    await create_credential(client, api_key=api_key)
    microsoft.stats.reset()
    response = await bulk(client, api_key=api_key, emails=KINDS)
    assert response.status_code == 207
    # 6 lookups, then a probe of every mailbox found (the alias's user too): the type decides first
    assert microsoft.stats.batch_items == 2 * len(KINDS)
    results = response.json()
    assert outcomes(results) == {
        "jim@contoso.com": (True, None, "user"),
        "sales@contoso.com": (True, None, "shared"),
        "accounting@contoso.com": (True, None, "shared"),
        "toby@contoso.com": (False, "MAILBOX_DISABLED", "user"),
        "conference-room@contoso.com": (False, "UNSUPPORTED_MAILBOX_TYPE", None),
        "sales@contoso.onmicrosoft.com": (False, "WRONG_ALIAS", "shared"),
    }
    assert results[5]["primary_email"] == "sales@contoso.com"
    assert microsoft.sent_mail == []  # no message is sent to decide a verification
    async with state.sessions() as session:
        rows = (await session.execute(select(Mailbox.email, Mailbox.mailbox_type))).all()
    stored = {row.email: row.mailbox_type for row in rows}
    assert stored == {
        "jim@contoso.com": "user",
        "sales@contoso.com": "shared",
        "accounting@contoso.com": "shared",
    }

    sales = results[1]
    read = (await client.get(f"{MAILBOXES}/{sales['id']}", headers=headers(api_key))).json()
    assert (read["email"], read["mailbox_type"]) == ("sales@contoso.com", "shared")
    page = (await client.get(MAILBOXES, headers=headers(api_key))).json()["content"]
    assert {m["email"]: m["mailbox_type"] for m in page} == stored
    again = (await bulk(client, api_key=api_key, emails=["sales@contoso.com"])).json()[0]
    assert (again["already_connected"], again["id"], again["mailbox_type"]) == (True, sales["id"], "shared")


async def test_without_mailbox_settings_read_the_type_is_unknown_and_disabled_accounts_stay_disabled(
    client: httpx.AsyncClient, api_key: str, microsoft: FakeMicrosoft
) -> None:
    """The app has User.Read.All and Mail.Send only: the directory cannot tell shared from disabled."""
    scenario = microsoft.scenario.model_copy(deep=True)
    app = next(a for a in scenario.tenants[0].apps if str(a.client_id) == sv.WORKING_APP)
    app.roles = ["User.Read.All", "Mail.Send"]
    microsoft.change_directory(scenario)
    credential = await create_credential(client, api_key=api_key)
    assert credential["missing_permissions"] == []
    microsoft.stats.reset()
    results = (await bulk(client, api_key=api_key, emails=KINDS)).json()
    assert outcomes(results) == {
        "jim@contoso.com": (True, None, None),
        "sales@contoso.com": (False, "MAILBOX_DISABLED", None),
        "accounting@contoso.com": (True, None, None),
        "toby@contoso.com": (False, "MAILBOX_DISABLED", None),
        "conference-room@contoso.com": (False, "MAILBOX_DISABLED", None),
        "sales@contoso.onmicrosoft.com": (False, "MAILBOX_DISABLED", None),
    }
    read = (await client.get(f"{MAILBOXES}/{results[0]['id']}", headers=headers(api_key))).json()
    assert read["mailbox_type"] is None
    assert microsoft.stats.batch_items == len(KINDS)  # the lookups only: no mailboxSettings probe
    assert microsoft.sent_mail == []


async def test_rows_from_before_migration_0003_read_null_and_the_downgrade_drops_the_column(
    database_url: str,
) -> None:
    engine = create_engine(database_url)
    async with at_revision(engine, "0002") as connection:
        assert "mailbox_type" not in await columns(connection, "mailboxes")
        await old_mailbox(connection, await old_account(connection), dkim_correct=True)
    try:
        async with engine.connect() as connection:
            assert (await connection.execute(select(Mailbox.mailbox_type))).scalar_one() is None
    finally:
        await engine.dispose()
