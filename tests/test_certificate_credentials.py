"""Certificate credentials through the API (API.md §2, "Certificate credentials"): creation, a bulk
request through the certificate, rotation by PATCH, each 422 and 400, and no private key anywhere we
answer, log or store in clear. Real ASGI stack, both databases, the simulator checking the assertion."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from m365connect.simulator import FakeMicrosoft
from m365connect.state import AppState
from tests import scenario_values as sv
from tests.certificates import ENDED, EXPIRED, REGISTERED, load, make_certificate
from tests.factories import CREDENTIALS, bulk
from tests.helpers import assert_code, assert_generic_error, headers

EXAMPLE = load(REGISTERED)
NOT_AFTER = EXAMPLE.certificate.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")


def certificate_body(**overrides: Any) -> dict[str, Any]:
    """A creation body for the example certificate app, with overrides (None drops a field)."""
    body: dict[str, Any] = {
        "tenant_id": sv.CONTOSO_TENANT,
        "client_id": sv.CERTIFICATE_APP,
        "certificate": EXAMPLE.pem,
        "name": "Certificate app",
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


async def _create(client: httpx.AsyncClient, api_key: str, **overrides: Any) -> dict[str, Any]:
    response = await client.post(CREDENTIALS, json=certificate_body(**overrides), headers=headers(api_key))
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def test_create_with_a_certificate_shows_its_thumbprint_and_expiry(
    client: httpx.AsyncClient, api_key: str
) -> None:
    created = await _create(client, api_key)
    assert created["credential_type"] == "certificate"
    assert created["certificate_thumbprint"] == EXAMPLE.thumbprint
    assert created["secret_expires_at"] == NOT_AFTER
    assert created["status"] == "VALID"
    assert created["missing_permissions"] == []


async def test_pkcs12_with_password_and_an_earlier_stated_expiry(
    client: httpx.AsyncClient, api_key: str
) -> None:
    created = await _create(
        client,
        api_key,
        certificate=EXAMPLE.pkcs12("pfx-pass"),
        certificate_password="pfx-pass",
        secret_expires_at="2030-01-01T00:00:00Z",
    )
    assert (created["certificate_thumbprint"], created["secret_expires_at"]) == (
        EXAMPLE.thumbprint,
        "2030-01-01T00:00:00Z",
    )


async def test_a_bulk_request_connects_through_the_certificate(
    client: httpx.AsyncClient, api_key: str, state: AppState, microsoft: FakeMicrosoft
) -> None:
    created = await _create(client, api_key)
    state.tokens.clear()  # so the bulk signs a new assertion with the key as stored (sealed, then opened)
    before = microsoft.stats.token_requests
    response = await bulk(
        client, api_key=api_key, emails=["jim@contoso.com"], credential_id=created["credential_id"]
    )
    assert response.status_code == 201, response.text
    assert response.json()[0]["success"] is True
    assert microsoft.stats.token_requests == before + 1


async def test_rotation_verifies_the_new_certificate_first(client: httpx.AsyncClient, api_key: str) -> None:
    created = await _create(client, api_key)
    url = f"{CREDENTIALS}/{created['credential_id']}"
    unknown = make_certificate()
    refused = await client.patch(url, json={"certificate": unknown.pem}, headers=headers(api_key))
    assert_code(refused, "CERTIFICATE_NOT_REGISTERED")
    assert (await client.get(CREDENTIALS, headers=headers(api_key))).json()["credentials"] == [created]
    rotated = await client.patch(
        url,
        json={"certificate": EXAMPLE.pkcs12(), "secret_expires_at": "2031-01-01"},
        headers=headers(api_key),
    )
    assert rotated.status_code == 200, rotated.text
    assert rotated.json()["secret_expires_at"] == "2031-01-01T23:59:59Z"
    assert rotated.json()["certificate_thumbprint"] == EXAMPLE.thumbprint


async def test_a_secret_credential_can_move_to_a_certificate_of_the_same_app(
    client: httpx.AsyncClient, api_key: str
) -> None:
    # The working app has no certificate: a certificate for it is refused and the secret stays in force.
    response = await client.post(
        CREDENTIALS,
        json={
            "tenant_id": sv.CONTOSO_TENANT,
            "client_id": sv.WORKING_APP,
            "client_secret": sv.WORKING_SECRET,
            "secret_expires_at": sv.FUTURE,
        },
        headers=headers(api_key),
    )
    url = f"{CREDENTIALS}/{response.json()['credential_id']}"
    refused = await client.patch(url, json={"certificate": EXAMPLE.pem}, headers=headers(api_key))
    assert_code(refused, "CERTIFICATE_NOT_REGISTERED")
    kept = (await client.get(CREDENTIALS, headers=headers(api_key))).json()["credentials"][0]
    assert (kept["credential_type"], kept["certificate_thumbprint"]) == ("client_secret", None)


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        pytest.param({"certificate": "garbage"}, "INVALID_CERTIFICATE", id="unparsable"),
        pytest.param({"certificate": EXAMPLE.certificate_pem}, "INVALID_CERTIFICATE", id="no-key"),
        pytest.param(
            {"certificate": EXAMPLE.certificate_pem + make_certificate().key_pem()},
            "INVALID_CERTIFICATE",
            id="key-mismatch",
        ),
        pytest.param({"certificate": make_certificate(bits=1024).pem}, "INVALID_CERTIFICATE", id="rsa-1024"),
        pytest.param(
            {"certificate": make_certificate().pem}, "CERTIFICATE_NOT_REGISTERED", id="unregistered"
        ),
        pytest.param({"certificate": load(EXPIRED).pem}, "CLIENT_SECRET_EXPIRED", id="expired-locally"),
        pytest.param(
            {"certificate": load(EXPIRED).pem, "secret_expires_at": "2020-01-01"},
            "CLIENT_SECRET_EXPIRED",
            id="stated-expiry-past",
        ),
        pytest.param({"tenant_id": "common"}, "INVALID_TENANT_ID", id="tenant"),
    ],
)
async def test_refusals_are_422_and_save_nothing(
    client: httpx.AsyncClient, api_key: str, overrides: dict[str, Any], code: str
) -> None:
    response = await client.post(CREDENTIALS, json=certificate_body(**overrides), headers=headers(api_key))
    assert_code(response, code)
    assert (await client.get(CREDENTIALS, headers=headers(api_key))).json() == {"credentials": []}


async def test_a_certificate_ended_at_microsoft_is_client_secret_expired(
    client: httpx.AsyncClient, api_key: str
) -> None:
    """Valid by its own dates, but its keyCredential ended in Entra: AADSTS700027 "The key used is
    expired" from Microsoft, answered as CLIENT_SECRET_EXPIRED, nothing saved."""
    ended = load(ENDED)
    assert ended.certificate.not_valid_after_utc > datetime.now(UTC)
    response = await client.post(
        CREDENTIALS, json=certificate_body(certificate=ended.pem), headers=headers(api_key)
    )
    assert_code(response, "CLIENT_SECRET_EXPIRED")
    assert (await client.get(CREDENTIALS, headers=headers(api_key))).json() == {"credentials": []}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param(
            certificate_body(client_secret="s", secret_expires_at=sv.FUTURE), "certificate", id="both"
        ),
        pytest.param(
            certificate_body(secret_expires_at=(datetime.now(UTC) + timedelta(days=365 * 40)).isoformat()),
            "secret_expires_at",
            id="later-than-notafter",
        ),
        pytest.param(certificate_body(certificate=None), "client_secret", id="neither"),
        pytest.param(
            certificate_body(
                certificate=None, certificate_password="x", client_secret="s", secret_expires_at=sv.FUTURE
            ),
            "certificate_password",
            id="password-alone",
        ),
        pytest.param(certificate_body(certificate=5), "certificate", id="wrong-type"),
        pytest.param(certificate_body(certificate="x" * 70000), "certificate", id="too-long"),
    ],
)
async def test_malformed_certificate_bodies_are_400_naming_the_field(
    client: httpx.AsyncClient, api_key: str, body: dict[str, Any], field: str
) -> None:
    response = await client.post(CREDENTIALS, json=body, headers=headers(api_key))
    assert_generic_error(response, status=400, title="Bad Request")
    assert f"'{field}'" in response.json()["detail"]
    assert "PRIVATE" not in response.text


async def test_the_private_key_is_never_answered_logged_or_stored_in_clear(
    client: httpx.AsyncClient, api_key: str, state: AppState, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    seen = [await client.post(CREDENTIALS, json=certificate_body(), headers=headers(api_key))]
    url = f"{CREDENTIALS}/{seen[0].json()['credential_id']}"
    seen.append(
        await client.patch(url, json={"certificate": make_certificate().pem}, headers=headers(api_key))
    )
    seen.append(
        await client.patch(
            url,
            json={"certificate": EXAMPLE.pkcs12("pw"), "certificate_password": "pw"},
            headers=headers(api_key),
        )
    )
    seen.append(
        await client.post(
            CREDENTIALS, json=certificate_body(certificate=EXAMPLE.key_pem()), headers=headers(api_key)
        )
    )
    seen.append(await bulk(client, api_key=api_key, emails=["jim@contoso.com"]))
    seen.append(await client.get(CREDENTIALS, headers=headers(api_key)))
    async with state.engine.connect() as connection:
        stored = "\n".join(
            str(v) if not isinstance(v, bytes | memoryview) else bytes(v).decode("latin-1")
            for row in (await connection.execute(text("SELECT * FROM graph_credentials"))).all()
            for v in row
        )
    key_lines = [line for line in EXAMPLE.key_pem().splitlines() if "-----" not in line]
    for place in [*(r.text for r in seen), caplog.text, stored]:
        assert "PRIVATE KEY" not in place
        assert not any(line in place for line in key_lines)
    assert EXAMPLE.thumbprint in stored
