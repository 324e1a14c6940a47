"""Microsoft Graph credentials API (API.md §2) against the simulated identity platform."""

from __future__ import annotations

import re

import httpx
import pytest
from sqlalchemy import select

from m365connect.credentials.models import GraphCredential
from m365connect.simulator import FakeMicrosoft
from m365connect.state import AppState
from tests import scenario_values as sv
from tests.factories import CREDENTIALS, FABRIKAM, bulk, create_credential, credential_body
from tests.helpers import assert_code, assert_generic_error, headers

ISO_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")


async def test_create_returns_the_credential_without_its_secret(
    client: httpx.AsyncClient, api_key: str
) -> None:
    response = await client.post(CREDENTIALS, json=credential_body(), headers=headers(api_key))
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {
        "credential_id",
        "tenant_id",
        "client_id",
        "secret_expires_at",
        "name",
        "cloud",
        "credential_type",
        "certificate_thumbprint",
        "status",
        "verified_at",
        "checked_at",
        "expires_in_days",
        "granted_permissions",
        "missing_permissions",
    }
    assert (body["credential_type"], body["certificate_thumbprint"]) == ("client_secret", None)
    assert body["tenant_id"] == sv.CONTOSO_TENANT
    assert body["client_id"] == sv.WORKING_APP
    assert body["secret_expires_at"] == sv.FUTURE
    assert body["name"] == "MS Graph app"
    assert body["status"] == "VALID"
    assert ISO_Z.match(body["verified_at"])
    assert body["checked_at"] == body["verified_at"]  # creation asked Microsoft, which granted a token
    assert body["expires_in_days"] > 365
    assert body["granted_permissions"] == ["Mail.Send", "MailboxSettings.Read", "User.Read.All"]
    assert body["missing_permissions"] == []
    assert sv.WORKING_SECRET not in response.text
    listed = (await client.get(CREDENTIALS, headers=headers(api_key))).json()
    assert listed == {"credentials": [body]}


async def test_default_name_and_order(client: httpx.AsyncClient, api_key: str) -> None:
    first = await create_credential(client, api_key=api_key, name=None)
    second = await create_credential(client, api_key=api_key, **FABRIKAM, name=None)
    assert first["name"] == "Microsoft Graph credential 1"
    assert second["name"] == "Microsoft Graph credential 2"
    listed = (await client.get(CREDENTIALS, headers=headers(api_key))).json()["credentials"]
    assert [item["credential_id"] for item in listed] == [first["credential_id"], second["credential_id"]]


async def test_tenant_may_be_a_verified_domain_and_a_bare_date_is_end_of_day(
    client: httpx.AsyncClient, api_key: str
) -> None:
    created = await create_credential(
        client, api_key=api_key, tenant_id=sv.CONTOSO_DOMAIN, secret_expires_at="2031-05-06"
    )
    assert created["tenant_id"] == sv.CONTOSO_DOMAIN
    assert created["secret_expires_at"] == "2031-05-06T23:59:59Z"
    again = await client.post(CREDENTIALS, json=credential_body(), headers=headers(api_key))
    assert_code(again, "CREDENTIAL_ALREADY_EXISTS")  # same tenant by GUID, same client


async def test_missing_permissions_are_reported_not_refused(client: httpx.AsyncClient, api_key: str) -> None:
    unconsented = await create_credential(
        client, api_key=api_key, client_id=sv.UNCONSENTED_APP, client_secret=sv.UNCONSENTED_SECRET
    )
    assert unconsented["granted_permissions"] == []
    assert unconsented["missing_permissions"] == ["Mail.Send", "User.Read.All"]
    reader = await create_credential(
        client, api_key=api_key, client_id=sv.READER_APP, client_secret=sv.READER_SECRET
    )
    assert reader["missing_permissions"] == ["Mail.Send"]


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"tenant_id": "not a tenant"}, "INVALID_TENANT_ID"),
        ({"tenant_id": "common"}, "INVALID_TENANT_ID"),
        ({"tenant_id": "Organizations"}, "INVALID_TENANT_ID"),
        ({"tenant_id": sv.UNKNOWN_TENANT}, "INVALID_TENANT_ID"),
        ({"tenant_id": "nobody.example"}, "INVALID_TENANT_ID"),
        ({"client_id": "my-app"}, "INVALID_CLIENT_ID"),
        ({"client_id": sv.UNKNOWN_APP}, "INVALID_CLIENT_ID"),
        ({"client_id": sv.DISABLED_APP, "client_secret": sv.DISABLED_SECRET}, "INVALID_CLIENT_ID"),
        ({"client_secret": "wrong-secret"}, "INVALID_CLIENT_SECRET"),
        ({"client_secret": "   "}, "INVALID_CLIENT_SECRET"),
        ({"client_id": sv.EXPIRED_APP, "client_secret": sv.EXPIRED_SECRET}, "CLIENT_SECRET_EXPIRED"),
        ({"secret_expires_at": "2020-01-01T00:00:00Z"}, "CLIENT_SECRET_EXPIRED"),
    ],
)
async def test_each_refusal_is_a_422_and_saves_nothing(
    client: httpx.AsyncClient, api_key: str, overrides: dict[str, str], code: str
) -> None:
    response = await client.post(CREDENTIALS, json=credential_body(**overrides), headers=headers(api_key))
    assert_code(response, code)
    assert (await client.get(CREDENTIALS, headers=headers(api_key))).json() == {"credentials": []}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"client_id": sv.WORKING_APP, "client_secret": "x", "secret_expires_at": sv.FUTURE}, "tenant_id"),
        (credential_body(client_id=123), "client_id"),
        (credential_body(client_secret=None), "client_secret"),
        (credential_body(secret_expires_at="next tuesday"), "secret_expires_at"),
        (credential_body(secret_expires_at=20300101), "secret_expires_at"),
        (credential_body(name=""), "name"),
        (credential_body(name=["x"]), "name"),
    ],
)
async def test_malformed_fields_are_400_naming_the_field(
    client: httpx.AsyncClient, api_key: str, body: dict[str, object], field: str
) -> None:
    response = await client.post(CREDENTIALS, json=body, headers=headers(api_key))
    assert_generic_error(response, status=400, title="Bad Request")
    assert f"'{field}'" in response.json()["detail"]


@pytest.mark.parametrize("content", [b"", b"not json", b"[1, 2]", b'"text"', b"{"])
async def test_bodies_that_are_not_objects_are_400(
    client: httpx.AsyncClient, api_key: str, content: bytes
) -> None:
    response = await client.post(
        CREDENTIALS, content=content, headers={**headers(api_key), "content-type": "application/json"}
    )
    assert_generic_error(response, status=400, title="Bad Request")


async def test_identity_platform_down_is_503_and_saves_nothing(
    client: httpx.AsyncClient, api_key: str, microsoft: FakeMicrosoft
) -> None:
    microsoft.faults.token_unavailable_rate = 1.0
    response = await client.post(CREDENTIALS, json=credential_body(), headers=headers(api_key))
    assert_generic_error(response, status=503, title="Service Unavailable")
    assert int(response.headers["retry-after"]) >= 1
    assert microsoft.stats.token_requests == 4
    microsoft.faults.token_unavailable_rate = 0.0
    assert (await client.get(CREDENTIALS, headers=headers(api_key))).json() == {"credentials": []}


async def test_transient_token_failures_are_retried(
    client: httpx.AsyncClient, api_key: str, microsoft: FakeMicrosoft
) -> None:
    microsoft.faults.token_throttle_rate = 0.5
    microsoft.faults.seed = 3
    created = await create_credential(client, api_key=api_key)
    assert created["status"] == "VALID"
    assert microsoft.stats.token_requests >= 1


async def test_secret_is_encrypted_at_rest(client: httpx.AsyncClient, state: AppState, api_key: str) -> None:
    created = await create_credential(client, api_key=api_key)
    async with state.sessions() as session:
        row = await session.scalar(select(GraphCredential))
    assert row is not None
    assert sv.WORKING_SECRET.encode() not in row.secret_ciphertext
    assert row.id == created["credential_id"]


async def test_rename(client: httpx.AsyncClient, api_key: str, microsoft: FakeMicrosoft) -> None:
    created = await create_credential(client, api_key=api_key)
    microsoft.stats.reset()
    url = f"{CREDENTIALS}/{created['credential_id']}"
    response = await client.patch(url, json={"name": "Renamed"}, headers=headers(api_key))
    assert response.status_code == 200
    assert response.json()["name"] == "Renamed"
    assert response.json()["verified_at"] == created["verified_at"]
    assert microsoft.stats.token_requests == 0


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"client_secret": sv.WORKING_SECRET_2},
        {"secret_expires_at": sv.FUTURE},
        {"name": None},
        {"name": 5},
        {"client_secret": None, "secret_expires_at": None},
    ],
)
async def test_patch_refuses_incomplete_bodies(
    client: httpx.AsyncClient, api_key: str, body: dict[str, object]
) -> None:
    created = await create_credential(client, api_key=api_key)
    response = await client.patch(
        f"{CREDENTIALS}/{created['credential_id']}", json=body, headers=headers(api_key)
    )
    assert_generic_error(response, status=400, title="Bad Request")


async def test_rotation_verifies_first_and_keeps_the_old_secret_on_failure(
    client: httpx.AsyncClient, api_key: str
) -> None:
    created = await create_credential(client, api_key=api_key)
    url = f"{CREDENTIALS}/{created['credential_id']}"
    bad = await client.patch(
        url, json={"client_secret": "wrong", "secret_expires_at": sv.FUTURE}, headers=headers(api_key)
    )
    assert_code(bad, "INVALID_CLIENT_SECRET")
    past = await client.patch(
        url,
        json={"client_secret": sv.WORKING_SECRET_2, "secret_expires_at": "2001-01-01"},
        headers=headers(api_key),
    )
    assert_code(past, "CLIENT_SECRET_EXPIRED")
    unchanged = (await client.get(CREDENTIALS, headers=headers(api_key))).json()["credentials"][0]
    assert unchanged == created
    rotated = await client.patch(
        url,
        json={"client_secret": sv.WORKING_SECRET_2, "secret_expires_at": "2032-02-02T00:00:00Z"},
        headers=headers(api_key),
    )
    assert rotated.status_code == 200
    assert rotated.json()["secret_expires_at"] == "2032-02-02T00:00:00Z"
    assert sv.WORKING_SECRET_2 not in rotated.text


async def test_the_rotated_secret_is_the_one_used_afterwards(
    client: httpx.AsyncClient, api_key: str, state: AppState, microsoft: FakeMicrosoft
) -> None:
    created = await create_credential(client, api_key=api_key)
    rotated = await client.patch(
        f"{CREDENTIALS}/{created['credential_id']}",
        json={"client_secret": sv.WORKING_SECRET_2, "secret_expires_at": sv.FUTURE},
        headers=headers(api_key),
    )
    assert rotated.status_code == 200
    # The admin deletes the old secret in Entra; a freshly started service must still connect.
    without_old = microsoft.scenario.model_copy(deep=True)
    app = next(a for a in without_old.tenants[0].apps if str(a.client_id) == sv.WORKING_APP)
    app.secrets = [secret for secret in app.secrets if secret.value != sv.WORKING_SECRET]
    microsoft.change_directory(without_old)
    state.tokens.clear()
    microsoft.stats.reset()
    response = await bulk(client, api_key=api_key, emails=["jim@contoso.com"])
    assert response.status_code == 201, response.text
    assert microsoft.stats.token_requests == 1


async def test_patch_and_delete_unknown_ids_are_404(client: httpx.AsyncClient, api_key: str) -> None:
    for url in (f"{CREDENTIALS}/999", f"{CREDENTIALS}/0", f"{CREDENTIALS}/abc", f"{CREDENTIALS}/{2**70}"):
        assert_generic_error(
            await client.patch(url, json={"name": "x"}, headers=headers(api_key)),
            status=404,
            title="Not Found",
        )
        assert_generic_error(
            await client.delete(url, headers=headers(api_key)), status=404, title="Not Found"
        )


async def test_delete(client: httpx.AsyncClient, api_key: str) -> None:
    created = await create_credential(client, api_key=api_key)
    url = f"{CREDENTIALS}/{created['credential_id']}"
    response = await client.delete(url, headers=headers(api_key))
    assert response.status_code == 204
    assert response.content == b""
    assert (await client.get(CREDENTIALS, headers=headers(api_key))).json() == {"credentials": []}
    assert (await client.delete(url, headers=headers(api_key))).status_code == 404


async def test_accounts_are_isolated(client: httpx.AsyncClient, api_key: str, other_api_key: str) -> None:
    mine = await create_credential(client, api_key=api_key)
    url = f"{CREDENTIALS}/{mine['credential_id']}"
    assert (await client.get(CREDENTIALS, headers=headers(other_api_key))).json() == {"credentials": []}
    for response in (
        await client.patch(url, json={"name": "stolen"}, headers=headers(other_api_key)),
        await client.delete(url, headers=headers(other_api_key)),
    ):
        assert_generic_error(
            response, status=404, title="Not Found", detail="Requested resource does not exist"
        )
    # The other account may register the same app for itself: duplicates are per account.
    theirs = await create_credential(client, api_key=other_api_key)
    assert theirs["credential_id"] != mine["credential_id"]
    assert (await client.get(CREDENTIALS, headers=headers(api_key))).json()["credentials"] == [mine]
