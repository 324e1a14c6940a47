"""Identity platform: client-credentials token endpoint and OpenID discovery, as AAD answers them."""

from __future__ import annotations

import base64
import json
import re
import time
from typing import Any

import httpx
import pytest

from m365connect.simulator import FakeMicrosoft

from .example import APPS, CONTOSO, FABRIKAM, token_form

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def _claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def _assert_aad_error(response: httpx.Response, status: int, error: str, code: int) -> dict[str, Any]:
    """Check status and the full AAD error shape; return the body."""
    body = dict(response.json())
    assert (response.status_code, body["error"], body["error_codes"]) == (status, error, [code])
    assert set(body) == {
        "error",
        "error_description",
        "error_codes",
        "timestamp",
        "trace_id",
        "correlation_id",
        "error_uri",
    }
    description = re.compile(
        rf"^AADSTS{code}: .+\r\nTrace ID: {UUID}\r\nCorrelation ID: {UUID}\r\n"
        r"Timestamp: \d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ$",
        re.DOTALL,
    )
    assert description.match(body["error_description"]), body["error_description"]
    assert f"Trace ID: {body['trace_id']}" in body["error_description"]
    assert body["timestamp"] in body["error_description"]
    assert body["error_uri"] == f"https://login.microsoftonline.com/error?code={code}"
    return body


def test_token_success_has_the_documented_shape_and_claims(client: httpx.Client) -> None:
    before = int(time.time())
    response = client.post(f"/{CONTOSO}/oauth2/v2.0/token", data=token_form("connector", client_info="1"))

    body = response.json()
    assert response.status_code == 200
    assert set(body) == {"token_type", "expires_in", "ext_expires_in", "access_token"}
    assert (body["token_type"], body["expires_in"], body["ext_expires_in"]) == ("Bearer", 3599, 3599)
    assert response.headers["cache-control"] == "no-store, no-cache"
    assert re.fullmatch(UUID, response.headers["x-ms-request-id"])
    claims = _claims(body["access_token"])
    assert claims["aud"] == "https://graph.microsoft.com"
    assert claims["iss"] == f"https://sts.windows.net/{CONTOSO}/"
    assert (claims["tid"], claims["appid"], claims["idtyp"]) == (CONTOSO, APPS["connector"].client_id, "app")
    assert re.fullmatch(UUID, claims["oid"])
    assert claims["roles"] == ["User.Read.All", "Mail.Send", "MailboxSettings.Read"]
    assert before <= claims["iat"] == claims["nbf"] <= claims["exp"] - 3599


def test_any_valid_secret_of_the_app_works(client: httpx.Client) -> None:
    rotated = token_form("connector", client_secret="Wp9Q~c0ntoso.Rotated.Secret_2aBc4De6Fg8H")

    response = client.post(f"/{CONTOSO}/oauth2/v2.0/token", data=rotated)

    assert response.status_code == 200


def test_app_without_consent_gets_a_token_without_roles_claim(client: httpx.Client) -> None:
    response = client.post(f"/{CONTOSO}/oauth2/v2.0/token", data=token_form("no_roles"))

    assert response.status_code == 200
    assert "roles" not in _claims(response.json()["access_token"])


def test_http_basic_client_authentication(client: httpx.Client) -> None:
    form = token_form("connector")
    credentials = (form.pop("client_id"), form.pop("client_secret"))

    response = client.post(f"/{CONTOSO}/oauth2/v2.0/token", data=form, auth=credentials)

    assert response.status_code == 200
    assert _claims(response.json()["access_token"])["appid"] == APPS["connector"].client_id


@pytest.mark.parametrize("tenant", ["Contoso.COM", "contoso.onmicrosoft.com", CONTOSO.upper()])
def test_tenant_by_any_verified_domain_or_guid_case_insensitive(client: httpx.Client, tenant: str) -> None:
    response = client.post(f"/{tenant}/oauth2/v2.0/token", data=token_form("connector"))

    assert response.status_code == 200
    assert _claims(response.json()["access_token"])["tid"] == CONTOSO


@pytest.mark.parametrize(
    ("tenant", "form", "status", "error", "code"),
    [
        ("nowhere.example", token_form("connector"), 400, "invalid_tenant", 90002),
        (FABRIKAM.replace("0b9d", "0b9e"), token_form("connector"), 400, "invalid_tenant", 90002),
        ("not a tenant!", token_form("connector"), 400, "invalid_request", 900023),
        ("common", token_form("connector"), 400, "invalid_request", 50194),
        (
            "organizations",
            token_form("connector", client_id=APPS["fabrikam"].client_id),
            400,
            "invalid_request",
            50194,
        ),
        (FABRIKAM, token_form("connector"), 400, "unauthorized_client", 700016),
        (
            CONTOSO,
            token_form("connector", client_id="00000000-0000-0000-0000-000000000001"),
            400,
            "unauthorized_client",
            700016,
        ),
        (CONTOSO, token_form("disabled"), 400, "unauthorized_client", 7000112),
        (CONTOSO, token_form("connector", client_secret="wrong"), 401, "invalid_client", 7000215),
        (CONTOSO, token_form("expired"), 401, "invalid_client", 7000222),
        (CONTOSO, token_form("connector", client_secret=""), 401, "invalid_client", 7000218),
        (
            CONTOSO,
            token_form("connector", scope="https://graph.microsoft.com/User.Read"),
            400,
            "invalid_scope",
            1002012,
        ),
        (
            CONTOSO,
            token_form("connector", scope="https://management.azure.com/.default"),
            400,
            "invalid_resource",
            500011,
        ),
        (CONTOSO, token_form("connector", grant_type=""), 400, "invalid_request", 900144),
        (CONTOSO, token_form("connector", grant_type="password"), 400, "unsupported_grant_type", 70003),
        (CONTOSO, token_form("connector", client_id=""), 400, "invalid_request", 900144),
    ],
)
def test_token_errors(
    client: httpx.Client, tenant: str, form: dict[str, str], status: int, error: str, code: int
) -> None:
    response = client.post(f"/{tenant}/oauth2/v2.0/token", data=form)

    _assert_aad_error(response, status, error, code)


def test_error_messages_name_the_app_and_tenant(client: httpx.Client) -> None:
    unknown = client.post("/nowhere.example/oauth2/v2.0/token", data=token_form("connector")).json()
    disabled = client.post(f"/{CONTOSO}/oauth2/v2.0/token", data=token_form("disabled")).json()

    assert "Tenant 'nowhere.example' not found" in unknown["error_description"]
    assert (
        f"Application '{APPS['disabled'].client_id}'(Retired integration) is disabled."
        in (disabled["error_description"])
    )


def test_correlation_id_echoes_client_request_id(client: httpx.Client) -> None:
    response = client.post(
        f"/{CONTOSO}/oauth2/v2.0/token",
        data=token_form("expired"),
        headers={"client-request-id": "0a1b2c3d-0000-4000-8000-000000000001"},
    )

    body = _assert_aad_error(response, 401, "invalid_client", 7000222)
    assert body["correlation_id"] == "0a1b2c3d-0000-4000-8000-000000000001"
    assert response.headers["x-ms-request-id"] == body["trace_id"]


def test_json_body_is_not_a_form(client: httpx.Client) -> None:
    response = client.post(f"/{CONTOSO}/oauth2/v2.0/token", json=token_form("connector"))

    _assert_aad_error(response, 400, "invalid_request", 900144)


def test_token_endpoint_only_accepts_post(client: httpx.Client) -> None:
    response = client.get(f"/{CONTOSO}/oauth2/v2.0/token")

    body = _assert_aad_error(response, 400, "invalid_request", 900561)
    assert "Received a GET request" in body["error_description"]


def test_openid_discovery_points_at_this_server(client: httpx.Client, fake: FakeMicrosoft) -> None:
    response = client.get("/contoso.com/v2.0/.well-known/openid-configuration")

    document = response.json()
    assert response.status_code == 200
    assert document["token_endpoint"] == f"{fake.base_url}/{CONTOSO}/oauth2/v2.0/token"
    assert document["authorization_endpoint"] == f"{fake.base_url}/{CONTOSO}/oauth2/v2.0/authorize"
    assert document["issuer"] == f"{fake.base_url}/{CONTOSO}/v2.0"
    assert client.get(document["jwks_uri"]).json() == {"keys": []}


def test_openid_discovery_for_common_keeps_the_tenant_placeholder(
    client: httpx.Client, fake: FakeMicrosoft
) -> None:
    document = client.get("/common/v2.0/.well-known/openid-configuration").json()

    assert document["issuer"] == f"{fake.base_url}/{{tenantid}}/v2.0"
    assert document["token_endpoint"] == f"{fake.base_url}/common/oauth2/v2.0/token"


def test_openid_discovery_of_unknown_tenant_is_invalid_tenant(client: httpx.Client) -> None:
    response = client.get("/nowhere.example/v2.0/.well-known/openid-configuration")

    _assert_aad_error(response, 400, "invalid_tenant", 90002)


def test_instance_discovery_names_this_server_for_its_own_host(
    client: httpx.Client, fake: FakeMicrosoft
) -> None:
    """MSAL sends the authority's authorize URL without the port; the answer points back at this server."""
    params = {
        "api-version": "1.1",
        "authorization_endpoint": f"https://127.0.0.1/{CONTOSO}/oauth2/v2.0/authorize",
    }
    response = client.get("/common/discovery/instance", params=params)

    body = response.json()
    assert response.status_code == 200
    assert (
        body["tenant_discovery_endpoint"]
        == f"{fake.base_url}/{CONTOSO}/v2.0/.well-known/openid-configuration"
    )
    assert body["api-version"] == "1.1"
    assert {"preferred_network": "127.0.0.1", "preferred_cache": "127.0.0.1", "aliases": ["127.0.0.1"]} in (
        body["metadata"]
    )
    assert client.get(body["tenant_discovery_endpoint"]).json()["token_endpoint"].startswith(fake.base_url)


def test_instance_discovery_knows_microsofts_clouds(client: httpx.Client) -> None:
    """What MSAL asks login.microsoftonline.com for the cache aliases, whatever the authority."""
    params = {
        "api-version": "1.1",
        "authorization_endpoint": "https://login.microsoftonline.com/common/oauth2/authorize",
    }
    response = client.get("/common/discovery/instance", params=params)

    body = response.json()
    assert response.status_code == 200
    assert body["tenant_discovery_endpoint"] == (
        "https://login.microsoftonline.com/common/v2.0/.well-known/openid-configuration"
    )
    groups = {group["preferred_network"]: group for group in body["metadata"]}
    assert groups["login.microsoftonline.com"]["preferred_cache"] == "login.windows.net"
    assert "login.usgovcloudapi.net" in groups["login.microsoftonline.us"]["aliases"]
    assert response.headers["cache-control"] == "max-age=86400, private"


@pytest.mark.parametrize(
    "endpoint",
    [
        "https://login.example.org/contoso.com/oauth2/v2.0/authorize",
        "http://127.0.0.1/contoso.com/oauth2/v2.0/authorize",
        "https://127.0.0.1/",
        "",
    ],
)
def test_instance_discovery_of_an_unknown_instance_is_invalid_instance(
    client: httpx.Client, endpoint: str
) -> None:
    params = {"api-version": "1.1", "authorization_endpoint": endpoint}
    response = client.get("/common/discovery/instance", params=params)

    _assert_aad_error(response, 400, "invalid_instance", 50049)
