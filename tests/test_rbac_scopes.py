"""Permissions found per mailbox, not from the token (issue 10 item 2, API.md §3, RBAC for Applications).

An app whose token lacks Mail.Send may still send as the mailboxes an Exchange role assignment scopes it
to: each mailbox is probed with a sendMail that has no recipients (docs/graph-client.md, "The send probe").
Through the real ASGI stack, the simulator's Graph (examples/scenario.yaml) and both databases.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from pydantic import ValidationError
from sqlalchemy import select

from m365connect.app import create_app
from m365connect.mailboxes.models import Mailbox
from m365connect.settings import Settings
from m365connect.simulator import FakeMicrosoft
from m365connect.simulator.exchange_rbac import ManagementScope, RoleAssignment
from m365connect.state import AppState, open_state
from tests import scenario_values as sv
from tests.factories import bulk, create_credential

IN_SCOPE = ["jim@contoso.com", "pam@contoso.com", "oscar@contoso.com"]  # the group "Outbound senders"
OUT_OF_SCOPE = ["nate@contoso.com", "kevin@contoso.com", "accounting@contoso.com"]
MAILBOXES = IN_SCOPE + OUT_OF_SCOPE


def errors(results: list[dict[str, Any]]) -> dict[str, str | None]:
    return {item["email"]: item["error"] for item in results}


async def scoped_credential(client: httpx.AsyncClient, api_key: str) -> dict[str, Any]:
    return await create_credential(
        client, api_key=api_key, client_id=sv.SCOPED_APP, client_secret=sv.SCOPED_SECRET
    )


async def stored(state: AppState) -> set[str]:
    async with state.sessions() as session:
        return set((await session.execute(select(Mailbox.email))).scalars())


def assign(microsoft: FakeMicrosoft, app: str, **fields: Any) -> None:
    """Replace Contoso's Exchange role assignments by one assignment of Application Mail.Send."""
    scenario = microsoft.scenario.model_copy(deep=True)
    assignment = RoleAssignment.model_validate({"app": app, "role": "Application Mail.Send", **fields})
    scenario.tenants[0].exchange_role_assignments = [assignment]
    microsoft.change_directory(scenario)


async def test_an_exchange_scope_over_half_the_mailboxes_connects_exactly_that_half(
    client: httpx.AsyncClient, api_key: str, state: AppState, microsoft: FakeMicrosoft
) -> None:
    credential = await scoped_credential(client, api_key)
    # The token's roles stay information: Mail.Send is absent from Entra, granted by Exchange instead.
    assert credential["missing_permissions"] == ["Mail.Send"]
    microsoft.stats.reset()
    response = await bulk(client, api_key=api_key, emails=MAILBOXES)
    assert response.status_code == 207
    assert errors(response.json()) == {
        **dict.fromkeys(IN_SCOPE, None),
        **dict.fromkeys(OUT_OF_SCOPE, "MAILBOX_ACCESS_DENIED"),
    }
    assert [item["success"] for item in response.json()] == [True] * 3 + [False] * 3
    assert await stored(state) == set(IN_SCOPE)
    assert microsoft.stats.batch_items == 2 * len(MAILBOXES)  # the lookups, then one send probe each
    assert microsoft.sent_mail == []  # no message was sent to decide a verification


async def test_a_scope_given_as_a_list_of_mailboxes_and_one_that_has_not_propagated_yet(
    client: httpx.AsyncClient, api_key: str, microsoft: FakeMicrosoft
) -> None:
    assign(microsoft, sv.SCOPED_APP, scope={"mailboxes": ["nate@contoso.com"]})
    await scoped_credential(client, api_key)
    first = (await bulk(client, api_key=api_key, emails=["nate@contoso.com", "jim@contoso.com"])).json()
    assert errors(first) == {"nate@contoso.com": None, "jim@contoso.com": "MAILBOX_ACCESS_DENIED"}

    # New-ManagementRoleAssignment takes 30 minutes to 2 hours to reach Exchange: until then, denied.
    assign(microsoft, sv.SCOPED_APP, scope={"mailboxes": ["pam@contoso.com"]}, propagation_seconds=3600)
    pending = (await bulk(client, api_key=api_key, emails=["pam@contoso.com"])).json()
    assert errors(pending) == {"pam@contoso.com": "MAILBOX_ACCESS_DENIED"}
    assign(microsoft, sv.SCOPED_APP, scope={"mailboxes": ["pam@contoso.com"]}, propagation_seconds=0)
    applied = (await bulk(client, api_key=api_key, emails=["pam@contoso.com"])).json()
    assert errors(applied) == {"pam@contoso.com": None}
    assert microsoft.sent_mail == []


async def test_an_entra_mail_send_grant_covers_every_mailbox_whatever_the_scope(
    client: httpx.AsyncClient, api_key: str, microsoft: FakeMicrosoft
) -> None:
    """Union semantics: a scope only restricts once the tenant-wide Entra grant is removed."""
    assign(microsoft, sv.WORKING_APP, scope=ManagementScope(mailboxes=["jim@contoso.com"]).model_dump())
    await create_credential(client, api_key=api_key)
    microsoft.stats.reset()
    results = (await bulk(client, api_key=api_key, emails=["jim@contoso.com", "pam@contoso.com"])).json()
    assert errors(results) == {"jim@contoso.com": None, "pam@contoso.com": None}
    assert microsoft.stats.batch_items == 4  # lookups and mailboxSettings: no send probe, the token says


@asynccontextmanager
async def service_with(settings: Settings, **changes: Any) -> AsyncIterator[httpx.AsyncClient]:
    """A second service on the same database with other settings, through the real ASGI stack."""
    changed = settings.model_copy(update=changes)
    async with open_state(changed) as state:
        transport = httpx.ASGITransport(app=create_app(changed, state=state), raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://m365connect.test") as http:
            yield http


async def test_with_the_send_probe_off_a_token_without_mail_send_is_refused_as_before(
    settings: Settings, api_key: str, state: AppState, microsoft: FakeMicrosoft
) -> None:
    async with service_with(settings, send_probe="off") as client:
        await scoped_credential(client, api_key)
        microsoft.stats.reset()
        results = (await bulk(client, api_key=api_key, emails=MAILBOXES)).json()
    assert errors(results) == dict.fromkeys(MAILBOXES, "MISSING_PERMISSIONS")
    assert microsoft.stats.batch_items == len(MAILBOXES)  # the lookups only
    assert await stored(state) == set()


def test_the_send_probe_setting_reads_its_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("M365CONNECT_SEND_PROBE", "off")
    assert Settings().send_probe == "off"
    monkeypatch.setenv("M365CONNECT_SEND_PROBE", "sometimes")
    with pytest.raises(ValidationError, match="send_probe"):
        Settings()
