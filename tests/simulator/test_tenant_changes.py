"""Changing a tenant at run time through the admin API (PATCH /_simulator/tenants/...), as an administrator
would: disable a user, remove a licence, disable an app; the next request sees the change."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest

from m365connect.simulator import FakeMicrosoft

from .example import APPS, CONTOSO, token_form

Bearer = Callable[[str], dict[str, str]]
JIM = "/_simulator/tenants/contoso.com/users/jim@contoso.com"


@pytest.fixture
def restored(fake: FakeMicrosoft) -> Iterator[FakeMicrosoft]:
    """The session's simulator, given back with the directory it had."""
    scenario = fake.scenario
    yield fake
    fake.change_directory(scenario)


def test_a_user_disabled_and_enabled_again(
    client: httpx.Client, bearer: Bearer, restored: FakeMicrosoft
) -> None:
    user = "/v1.0/users/jim@contoso.com?$select=accountEnabled"
    assert client.get(user, headers=bearer("connector")).json()["accountEnabled"] is True
    assert client.patch(JIM, json={"account_enabled": False}).status_code == 204
    assert client.get(user, headers=bearer("connector")).json()["accountEnabled"] is False
    assert restored.scenario.tenants[0].users[0].account_enabled is False
    assert client.patch(JIM, json={"account_enabled": True}).status_code == 204
    assert client.get(user, headers=bearer("connector")).json()["accountEnabled"] is True


def test_a_user_mailbox_without_licences_has_no_mailbox_but_a_shared_one_needs_none(
    client: httpx.Client, bearer: Bearer, restored: FakeMicrosoft
) -> None:
    settings = "/v1.0/users/{}/mailboxSettings?$select=userPurpose"
    assert client.get(settings.format("jim@contoso.com"), headers=bearer("connector")).status_code == 200
    assert client.patch(JIM, json={"assigned_licenses": []}).status_code == 204
    gone = client.get(settings.format("jim@contoso.com"), headers=bearer("connector"))
    assert gone.status_code == 404
    assert gone.json()["error"]["code"] == "MailboxNotEnabledForRESTAPI"
    shared = client.get(settings.format("sales@contoso.com"), headers=bearer("connector"))
    assert (shared.status_code, shared.json()["userPurpose"]) == (200, "shared")


def test_an_app_disabled_is_refused_a_token(client: httpx.Client, restored: FakeMicrosoft) -> None:
    token = f"/{CONTOSO}/oauth2/v2.0/token"
    assert client.post(token, data=token_form("connector")).status_code == 200
    app = f"/_simulator/tenants/{CONTOSO}/apps/{APPS['connector'].client_id}"
    assert client.patch(app, json={"enabled": False}).status_code == 204
    refused = client.post(token, data=token_form("connector"))
    assert refused.status_code in (400, 401)
    assert 7000112 in refused.json()["error_codes"]


@pytest.mark.parametrize(
    ("path", "body", "status", "says"),
    [
        ("/_simulator/tenants/nowhere.example/users/jim@contoso.com", {}, 404, "no tenant"),
        ("/_simulator/tenants/contoso.com/users/nobody@contoso.com", {}, 404, "no user"),
        ("/_simulator/tenants/contoso.com/apps/00000000-0000-4000-8000-000000000000", {}, 404, "no app"),
        (JIM, {"account_enabled": "maybe"}, 400, "account_enabled"),
        (JIM, {"favourite_colour": "blue"}, 400, "favourite_colour"),
        (JIM, ["not", "an", "object"], 400, "JSON object"),
    ],
)
def test_bad_changes_are_refused_and_change_nothing(
    client: httpx.Client, restored: FakeMicrosoft, path: str, body: object, status: int, says: str
) -> None:
    before = restored.scenario
    response = client.patch(path, json=body)
    assert response.status_code == status
    assert says in response.json()["error"]["message"]
    assert restored.scenario is before
