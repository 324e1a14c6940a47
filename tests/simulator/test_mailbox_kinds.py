"""Shared and resource mailboxes as Exchange Online creates them (issue 10 item 1)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from m365connect.simulator import FakeMicrosoft
from m365connect.simulator.directory import Directory
from m365connect.simulator.scenario import DEFAULT_SKU_ID, parse_scenario

from .test_graph_mail import MESSAGE
from .test_scenario import _scenario

Bearer = Callable[[str], dict[str, str]]


@pytest.mark.parametrize(
    ("overrides", "enabled", "licences"),
    [
        ({"mailbox": "user"}, True, (DEFAULT_SKU_ID,)),
        # New-Mailbox -Shared / -Room / -Equipment: sign-in blocked, no licence needed
        ({"mailbox": "shared"}, False, ()),
        ({"mailbox": "room"}, False, ()),
        ({"mailbox": "equipment"}, False, ()),
        ({"mailbox": "none"}, True, ()),
        # an admin may unblock a shared mailbox or a Teams Rooms account
        ({"mailbox": "shared", "account_enabled": True}, True, ()),
        ({"mailbox": "user", "account_enabled": False}, False, (DEFAULT_SKU_ID,)),
    ],
)
def test_account_enabled_and_licences_default_as_exchange_creates_them(
    overrides: dict[str, Any], enabled: bool, licences: tuple[str, ...]
) -> None:
    user = Directory(parse_scenario(_scenario(**overrides))).tenants[0].users[0]
    assert (user.account_enabled, user.licenses) == (enabled, licences)


@pytest.mark.parametrize(
    ("address", "purpose"),
    [("sales@contoso.com", "shared"), ("conference-room@contoso.com", "room")],
)
def test_example_shared_and_room_mailboxes(
    client: httpx.Client, bearer: Bearer, fake: FakeMicrosoft, address: str, purpose: str
) -> None:
    """Both have sign-in blocked and no licence; app-only sendMail works from the shared one."""
    user = client.get(
        f"/v1.0/users/{address}?$select=accountEnabled,assignedLicenses", headers=bearer("connector")
    ).json()
    assert (user["accountEnabled"], user["assignedLicenses"]) == (False, [])
    settings = client.get(
        f"/v1.0/users/{address}/mailboxSettings?$select=userPurpose", headers=bearer("connector")
    )
    assert settings.json()["userPurpose"] == purpose
    if purpose == "shared":
        sent = client.post(f"/v1.0/users/{address}/sendMail", json=MESSAGE, headers=bearer("connector"))
        assert sent.status_code == 202
        assert fake.sent_mail[-1]["from"] == address
