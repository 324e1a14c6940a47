"""Certificate credentials end to end at the token layer: our client assertion (RFC 7523) against the
simulator, which checks it as Entra does, and each refusal classified into our codes."""

from __future__ import annotations

import base64
import json
import logging
import ssl
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from tests import scenario_values as sv
from tests.certificates import EXPIRED, REGISTERED, load, make_certificate

from m365connect.codes import ErrorCode
from m365connect.microsoft.client_assertion import ASSERTION_TYPE, b64url, client_assertion
from m365connect.microsoft.error_codes import classify_token_error
from m365connect.microsoft.token import ClientCredential, TokenClient, TokenRejected, read_claims
from m365connect.simulator import FakeMicrosoft

EXAMPLE = load(REGISTERED)


@pytest.fixture
async def http(microsoft: FakeMicrosoft) -> AsyncIterator[httpx.AsyncClient]:
    context = ssl.create_default_context(cafile=str(microsoft.ca_path))
    async with httpx.AsyncClient(verify=context, timeout=10) as client:
        yield client


def _credential(key_pem: str, thumbprint: str, client_id: str = sv.CERTIFICATE_APP) -> ClientCredential:
    return ClientCredential(sv.CONTOSO_TENANT, client_id, key_pem, certificate_thumbprint=thumbprint)


def _token_url(microsoft: FakeMicrosoft) -> str:
    return f"{microsoft.base_url}/{sv.CONTOSO_TENANT}/oauth2/v2.0/token"


async def test_a_registered_certificate_gets_a_token(
    http: httpx.AsyncClient, microsoft: FakeMicrosoft
) -> None:
    client = TokenClient(http=http, login_url=microsoft.base_url)
    token = await client.verify(_credential(EXAMPLE.key_pem(), EXAMPLE.thumbprint))
    assert read_claims(token.value)["appid"] == sv.CERTIFICATE_APP
    assert token.roles is not None
    assert {"Mail.Send", "User.Read.All"} <= token.roles


def test_the_assertion_has_entras_header_and_claims() -> None:
    assertion = client_assertion(
        private_key_pem=EXAMPLE.key_pem(),
        thumbprint=EXAMPLE.thumbprint,
        client_id=sv.CERTIFICATE_APP,
        token_url="https://login.example/t/oauth2/v2.0/token",
        now=1_000_000,
    )
    segment = assertion.split(".")[0]
    header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    claims = read_claims(assertion)
    assert header == {"alg": "RS256", "typ": "JWT", "x5t": b64url(bytes.fromhex(EXAMPLE.thumbprint))}
    assert claims["aud"] == "https://login.example/t/oauth2/v2.0/token"
    assert claims["iss"] == claims["sub"] == sv.CERTIFICATE_APP
    assert (claims["nbf"], claims["iat"], claims["exp"]) == (1_000_000, 1_000_000, 1_000_600)
    again = client_assertion(
        private_key_pem=EXAMPLE.key_pem(),
        thumbprint=EXAMPLE.thumbprint,
        client_id=sv.CERTIFICATE_APP,
        token_url="https://login.example/t/oauth2/v2.0/token",
        now=1_000_000,
    )
    assert read_claims(again)["jti"] != claims["jti"]


async def _refusal(
    http: httpx.AsyncClient, microsoft: FakeMicrosoft, credential: ClientCredential
) -> TokenRejected:
    with pytest.raises(TokenRejected) as caught:
        await TokenClient(http=http, login_url=microsoft.base_url).verify(credential)
    return caught.value


async def test_an_unregistered_certificate_is_certificate_not_registered(
    http: httpx.AsyncClient, microsoft: FakeMicrosoft
) -> None:
    other = make_certificate()
    refused = await _refusal(http, microsoft, _credential(other.key_pem(), other.thumbprint))
    assert (refused.code, refused.error_codes) == (ErrorCode.CERTIFICATE_NOT_REGISTERED, [700027])


async def test_an_expired_registered_certificate_is_client_secret_expired(
    http: httpx.AsyncClient, microsoft: FakeMicrosoft
) -> None:
    expired = load(EXPIRED)
    refused = await _refusal(http, microsoft, _credential(expired.key_pem(), expired.thumbprint))
    assert (refused.code, refused.error_codes) == (ErrorCode.CLIENT_SECRET_EXPIRED, [700027])


async def test_a_registered_thumbprint_signed_with_another_key_is_refused(
    http: httpx.AsyncClient, microsoft: FakeMicrosoft
) -> None:
    other = make_certificate()
    refused = await _refusal(http, microsoft, _credential(other.key_pem(), EXAMPLE.thumbprint))
    assert (refused.code, refused.error_codes) == (ErrorCode.CERTIFICATE_NOT_REGISTERED, [700027])


async def test_an_app_without_that_certificate_is_certificate_not_registered(
    http: httpx.AsyncClient, microsoft: FakeMicrosoft
) -> None:
    credential = _credential(EXAMPLE.key_pem(), EXAMPLE.thumbprint, client_id=sv.WORKING_APP)
    refused = await _refusal(http, microsoft, credential)
    assert refused.code is ErrorCode.CERTIFICATE_NOT_REGISTERED


def _form(assertion: str) -> dict[str, str]:
    return {
        "client_id": sv.CERTIFICATE_APP,
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": assertion,
        "scope": "https://graph.microsoft.com/.default",
        "grant_type": "client_credentials",
    }


@pytest.mark.parametrize(
    ("change", "aadsts"),
    [
        pytest.param({"aud": "https://elsewhere.example/token"}, 50012, id="wrong-aud"),
        pytest.param({"client_id": sv.WORKING_APP}, 700021, id="iss-not-client"),
        pytest.param({"now": time.time() - 3600}, 700024, id="expired-assertion"),
    ],
)
async def test_bad_assertions_get_entras_codes_and_are_credential_rejected(
    http: httpx.AsyncClient, microsoft: FakeMicrosoft, change: dict[str, object], aadsts: int
) -> None:
    assertion = client_assertion(
        private_key_pem=EXAMPLE.key_pem(),
        thumbprint=EXAMPLE.thumbprint,
        client_id=str(change.get("client_id", sv.CERTIFICATE_APP)),
        token_url=str(change.get("aud", _token_url(microsoft))),
        now=float(change["now"]) if "now" in change else None,  # type: ignore[arg-type]
    )
    response = await http.post(_token_url(microsoft), data=_form(assertion))
    assert response.status_code == 401
    assert response.json()["error_codes"] == [aadsts]
    assert classify_token_error(response.status_code, response.json()) is ErrorCode.CREDENTIAL_REJECTED


async def test_a_tampered_assertion_is_refused(http: httpx.AsyncClient, microsoft: FakeMicrosoft) -> None:
    assertion = client_assertion(
        private_key_pem=EXAMPLE.key_pem(),
        thumbprint=EXAMPLE.thumbprint,
        client_id=sv.CERTIFICATE_APP,
        token_url=_token_url(microsoft),
    )
    header, _claims, signature = assertion.split(".")
    forged = b64url(json.dumps({"aud": _token_url(microsoft), "iss": sv.WORKING_APP}).encode())
    response = await http.post(_token_url(microsoft), data=_form(f"{header}.{forged}.{signature}"))
    assert (response.status_code, response.json()["error_codes"]) == (401, [700027])
    assert "did not match the expected signature" in response.json()["error_description"]


async def test_the_private_key_is_never_logged_or_in_errors(
    http: httpx.AsyncClient, microsoft: FakeMicrosoft, caplog: pytest.LogCaptureFixture
) -> None:
    other = make_certificate()
    caplog.set_level(logging.DEBUG)
    credential = _credential(other.key_pem(), other.thumbprint)
    refused = await _refusal(http, microsoft, credential)
    key_body = other.key_pem().splitlines()[1]
    assert key_body not in repr(credential)
    assert key_body not in str(refused)
    assert key_body not in caplog.text
