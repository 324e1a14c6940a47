"""Microsoft's own clients against the simulator: MSAL, azure-identity and msgraph-sdk, unmodified.

They succeed and fail exactly as docs/simulator.md says. Two pieces of plumbing make them reach the
simulator as they would reach Microsoft, without touching their code:
- the simulator's CA is passed explicitly, and requests' `trust_env` is off, because this machine points
  REQUESTS_CA_BUNDLE at the system bundle, which would win over a session's `verify`;
- MSAL always asks login.microsoftonline.com for instance metadata (at construction for an authority it
  does not know, and for the token cache's aliases after a failed request), so the HTTP session sends that
  host's requests to the simulator, as a hosts-file entry would.
A new MSAL application per case: MSAL replays a 400 from memory for 60 seconds.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import msal
import pytest
import requests
from azure.core.exceptions import ClientAuthenticationError
from azure.core.pipeline.transport import RequestsTransport
from azure.identity import CertificateCredential, ClientSecretCredential
from azure.identity.aio import CertificateCredential as AsyncCertificateCredential
from azure.identity.aio import ClientSecretCredential as AsyncClientSecretCredential
from kiota_abstractions.base_request_configuration import RequestConfiguration
from kiota_authentication_azure.azure_identity_authentication_provider import (
    AzureIdentityAuthenticationProvider,
)
from msgraph import GraphRequestAdapter, GraphServiceClient
from msgraph.generated.models.email_address import EmailAddress
from msgraph.generated.models.item_body import ItemBody
from msgraph.generated.models.message import Message
from msgraph.generated.models.recipient import Recipient
from msgraph.generated.users.item.send_mail.send_mail_post_request_body import SendMailPostRequestBody
from msgraph.generated.users.users_request_builder import UsersRequestBuilder
from msgraph_core import GraphClientFactory
from requests.adapters import HTTPAdapter

from m365connect.simulator import FakeMicrosoft
from tests.certificates import EXPIRED, REGISTERED, CertificateBundle, load, make_certificate

from .example import APPS, CERTIFICATE_APP, CONTOSO, GRAPH_SCOPE

UNKNOWN_APP = "0f0e0d0c-0b0a-4908-8706-050403020100"
# (tenant, client id, secret) -> the AADSTS code docs/simulator.md gives for it.
FAILURES = {
    "wrong secret": ((CONTOSO, APPS["connector"].client_id, "Wrong~Secret.Value"), 7000215),
    "unknown app": ((CONTOSO, UNKNOWN_APP, APPS["connector"].secret), 700016),
}


class _ToSimulator(HTTPAdapter):
    """Sends a request for another host to the simulator (same path and query): a hosts-file entry."""

    def __init__(self, base_url: str) -> None:
        super().__init__()
        self._base_url = base_url

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        parts = urlsplit(str(request.url))
        request.url = f"{self._base_url}{parts.path}" + (f"?{parts.query}" if parts.query else "")
        return super().send(request, **kwargs)


@pytest.fixture
def session(fake: FakeMicrosoft) -> Iterator[requests.Session]:
    with requests.Session() as http:
        http.trust_env = False
        http.verify = str(fake.ca_path)
        http.mount("https://login.microsoftonline.com/", _ToSimulator(fake.base_url))
        yield http


def _msal_app(
    fake: FakeMicrosoft, session: requests.Session, tenant: str, client_id: str, secret: str
) -> Any:
    return msal.ConfidentialClientApplication(
        client_id, client_credential=secret, authority=f"{fake.base_url}/{tenant}", http_client=session
    )


def _chain(exc: BaseException) -> str:
    """The text of an exception and of every exception it was raised from or during."""
    texts = []
    current: BaseException | None = exc
    while current is not None:
        texts.append(str(current))
        current = current.__cause__ or current.__context__
    return "\n".join(texts)


def _assert_simulator_token(fake: FakeMicrosoft, token: str, client_id: str) -> None:
    claims = fake.token_signer.decode(token)
    assert (claims["tid"], claims["appid"], claims["aud"]) == (
        CONTOSO,
        client_id,
        "https://graph.microsoft.com",
    )
    assert "Mail.Send" in claims["roles"]


# MSAL


def test_msal_good_secret_gets_a_token_the_simulator_signed(
    fake: FakeMicrosoft, session: requests.Session
) -> None:
    app = APPS["connector"]
    client = _msal_app(fake, session, app.tenant, app.client_id, app.secret)

    result = client.acquire_token_for_client([GRAPH_SCOPE])

    assert result.get("token_source") == "identity_provider", result.get("error_description")
    _assert_simulator_token(fake, result["access_token"], app.client_id)
    assert client.acquire_token_for_client([GRAPH_SCOPE])["token_source"] == "cache"


def test_msal_uses_the_simulators_instance_discovery_when_told(fake: FakeMicrosoft) -> None:
    """`instance_discovery=<url>` makes MSAL ask the simulator, with no redirected host at all."""
    app = APPS["connector"]
    with requests.Session() as plain:
        plain.trust_env, plain.verify = False, str(fake.ca_path)
        client = msal.ConfidentialClientApplication(
            app.client_id,
            client_credential=app.secret,
            authority=f"{fake.base_url}/contoso.com",
            http_client=plain,
            instance_discovery=f"{fake.base_url}/common/discovery/instance",
        )
        result = client.acquire_token_for_client([GRAPH_SCOPE])

    _assert_simulator_token(fake, result["access_token"], app.client_id)


def _msal_certificate_app(
    fake: FakeMicrosoft, session: requests.Session, key_pem: str, thumbprint: str
) -> Any:
    credential = {"private_key": key_pem, "thumbprint": thumbprint}
    return msal.ConfidentialClientApplication(
        CERTIFICATE_APP,
        client_credential=credential,
        authority=f"{fake.base_url}/{CONTOSO}",
        http_client=session,
    )


@pytest.mark.parametrize("by", ["thumbprint", "public_certificate"])
def test_msal_certificate_credential_gets_a_token(
    fake: FakeMicrosoft, session: requests.Session, by: str
) -> None:
    """MSAL's own client assertion passes the simulator's checks: RS256 with a padded `x5t` when given
    the SHA-1 thumbprint, PS256 with `x5t#S256` (and `x5c`) when given the certificate."""
    example = load(REGISTERED)
    if by == "thumbprint":
        client = _msal_certificate_app(fake, session, example.key_pem(), example.thumbprint)
    else:
        credential = {"private_key": example.key_pem(), "public_certificate": example.certificate_pem}
        client = msal.ConfidentialClientApplication(
            CERTIFICATE_APP,
            client_credential=credential,
            authority=f"{fake.base_url}/{CONTOSO}",
            http_client=session,
        )

    result = client.acquire_token_for_client([GRAPH_SCOPE])

    assert result.get("token_source") == "identity_provider", result.get("error_description")
    _assert_simulator_token(fake, result["access_token"], CERTIFICATE_APP)


@pytest.mark.parametrize(
    ("which", "reason"), [("unregistered", "The key was not found"), ("expired", "expired")]
)
def test_msal_certificate_refusals_are_aadsts700027(
    fake: FakeMicrosoft, session: requests.Session, which: str, reason: str
) -> None:
    bundle = make_certificate() if which == "unregistered" else load(EXPIRED)
    client = _msal_certificate_app(fake, session, bundle.key_pem(), bundle.thumbprint)

    result = client.acquire_token_for_client([GRAPH_SCOPE])

    assert result.get("error_codes") == [700027]
    assert reason in result["error_description"]


@pytest.mark.parametrize("case", FAILURES)
def test_msal_failures_report_the_aadsts_code(
    fake: FakeMicrosoft, session: requests.Session, case: str
) -> None:
    (tenant, client_id, secret), code = FAILURES[case]
    client = _msal_app(fake, session, tenant, client_id, secret)

    result = client.acquire_token_for_client([GRAPH_SCOPE])

    assert "access_token" not in result
    assert result["error_codes"] == [code]
    assert result["error_description"].startswith(f"AADSTS{code}: ")


def test_msal_unknown_tenant_fails_at_construction_with_90002(
    fake: FakeMicrosoft, session: requests.Session
) -> None:
    """MSAL reads the tenant's OpenID configuration when built; Entra's 400 becomes a ValueError."""
    app = APPS["connector"]
    with pytest.raises(ValueError, match="Unable to get authority configuration") as raised:
        _msal_app(fake, session, "nowhere.example.com", app.client_id, app.secret)

    assert "AADSTS90002: Tenant 'nowhere.example.com' not found." in _chain(raised.value)


# azure-identity


def _credential(fake: FakeMicrosoft, tenant: str, client_id: str, secret: str) -> Any:
    """azure-identity with instance discovery off (its knob for clouds it does not know): MSAL then asks
    no host for metadata; the MSAL tests above cover discovery."""
    transport = RequestsTransport(use_env_settings=False, connection_verify=str(fake.ca_path))
    return ClientSecretCredential(
        tenant,
        client_id,
        secret,
        authority=fake.base_url,
        transport=transport,
        disable_instance_discovery=True,
    )


def test_azure_identity_good_secret_gets_a_token(fake: FakeMicrosoft) -> None:
    app = APPS["connector"]
    with _credential(fake, app.tenant, app.client_id, app.secret) as credential:
        token = credential.get_token(GRAPH_SCOPE)

    _assert_simulator_token(fake, token.token, app.client_id)
    assert token.expires_on > 0


@pytest.mark.parametrize("case", FAILURES)
def test_azure_identity_failures_report_the_aadsts_code(fake: FakeMicrosoft, case: str) -> None:
    (tenant, client_id, secret), code = FAILURES[case]
    with (
        _credential(fake, tenant, client_id, secret) as credential,
        pytest.raises(ClientAuthenticationError, match=f"AADSTS{code}: "),
    ):
        credential.get_token(GRAPH_SCOPE)


def test_azure_identity_unknown_tenant_reports_90002(fake: FakeMicrosoft) -> None:
    app = APPS["connector"]
    with (
        _credential(fake, "nowhere.example.com", app.client_id, app.secret) as credential,
        pytest.raises(ClientAuthenticationError) as raised,
    ):
        credential.get_token(GRAPH_SCOPE)

    assert "AADSTS90002" in _chain(raised.value)


# azure-identity with a certificate: the sync credential signs through MSAL, the aio one through
# azure-identity's own client; both must get the simulator's token and report Entra's AADSTS700027.
CERTIFICATE_FAILURES = {"unregistered": "The key was not found", "expired": "The key used is expired"}


def _certificate(which: str) -> CertificateBundle:
    if which == "registered":
        return load(REGISTERED)
    return make_certificate() if which == "unregistered" else load(EXPIRED)


def _certificate_credential(fake: FakeMicrosoft, bundle: CertificateBundle) -> Any:
    transport = RequestsTransport(use_env_settings=False, connection_verify=str(fake.ca_path))
    return CertificateCredential(
        CONTOSO,
        CERTIFICATE_APP,
        certificate_data=bundle.pem.encode(),
        authority=fake.base_url,
        transport=transport,
        disable_instance_discovery=True,
    )


def _async_certificate_credential(
    fake: FakeMicrosoft, bundle: CertificateBundle, *, chain: bool = False
) -> Any:
    return AsyncCertificateCredential(
        CONTOSO,
        CERTIFICATE_APP,
        certificate_data=bundle.pem.encode(),
        authority=fake.base_url,
        connection_verify=str(fake.ca_path),
        send_certificate_chain=chain,
    )


def test_azure_identity_certificate_gets_a_token(fake: FakeMicrosoft) -> None:
    with _certificate_credential(fake, _certificate("registered")) as credential:
        token = credential.get_token(GRAPH_SCOPE)

    _assert_simulator_token(fake, token.token, CERTIFICATE_APP)


@pytest.mark.parametrize("chain", [False, True], ids=["x5t", "x5t and x5c"])
async def test_azure_identity_aio_certificate_gets_a_token(fake: FakeMicrosoft, chain: bool) -> None:
    async with _async_certificate_credential(fake, _certificate("registered"), chain=chain) as credential:
        token = await credential.get_token(GRAPH_SCOPE)

    _assert_simulator_token(fake, token.token, CERTIFICATE_APP)


@pytest.mark.parametrize("which", CERTIFICATE_FAILURES)
def test_azure_identity_certificate_refusals_are_aadsts700027(fake: FakeMicrosoft, which: str) -> None:
    with (
        _certificate_credential(fake, _certificate(which)) as credential,
        pytest.raises(ClientAuthenticationError, match="AADSTS700027: ") as raised,
    ):
        credential.get_token(GRAPH_SCOPE)

    assert CERTIFICATE_FAILURES[which] in str(raised.value)


@pytest.mark.parametrize("which", CERTIFICATE_FAILURES)
async def test_azure_identity_aio_certificate_refusals_are_aadsts700027(
    fake: FakeMicrosoft, which: str
) -> None:
    async with _async_certificate_credential(fake, _certificate(which)) as credential:
        with pytest.raises(ClientAuthenticationError, match="AADSTS700027: ") as raised:
            await credential.get_token(GRAPH_SCOPE)

    assert CERTIFICATE_FAILURES[which] in str(raised.value)


# msgraph-sdk


@pytest.fixture
async def graph(fake: FakeMicrosoft) -> AsyncIterator[GraphServiceClient]:
    """The SDK as Microsoft's samples build it, with the simulator's base URL and CA."""
    app = APPS["connector"]
    credential = AsyncClientSecretCredential(
        app.tenant, app.client_id, app.secret, authority=fake.base_url, connection_verify=str(fake.ca_path)
    )
    auth = AzureIdentityAuthenticationProvider(credential, scopes=[GRAPH_SCOPE], allowed_hosts=["127.0.0.1"])
    # msgraph-core wraps the client's transport in one whose aclose() does not close the wrapped one: the
    # test closes its own transport, or the connection outlives the test.
    transport = httpx.AsyncHTTPTransport(verify=ssl.create_default_context(cafile=str(fake.ca_path)))
    async with credential, transport, httpx.AsyncClient(transport=transport) as http:
        adapter = GraphRequestAdapter(
            auth, client=GraphClientFactory.create_with_default_middleware(client=http)
        )
        adapter.base_url = f"{fake.base_url}/v1.0"
        yield GraphServiceClient(request_adapter=adapter)


def _lookup(address: str, select: list[str]) -> RequestConfiguration[Any]:
    query = UsersRequestBuilder.UsersRequestBuilderGetQueryParameters(
        filter=f"proxyAddresses/any(x:x eq 'smtp:{address}')", select=select
    )
    return RequestConfiguration(query_parameters=query)


async def test_msgraph_users_lookup_gets_only_what_it_selected(graph: GraphServiceClient) -> None:
    without_id = await graph.users.get(request_configuration=_lookup("jimothy@contoso.com", ["displayName"]))
    with_id = await graph.users.get(
        request_configuration=_lookup("jimothy@contoso.com", ["id", "displayName"])
    )

    assert without_id is not None
    assert without_id.value is not None
    assert [(u.id, u.display_name) for u in without_id.value] == [(None, "Jim Halpert")]
    assert with_id is not None
    assert with_id.value is not None
    [jim] = with_id.value
    assert jim.id is not None
    assert jim.display_name == "Jim Halpert"


async def test_msgraph_send_mail_with_the_sdks_own_body(
    graph: GraphServiceClient, fake: FakeMicrosoft
) -> None:
    """The SDK serialises {"Message": ..., "SaveToSentItems": false}: the simulator reads it as Graph does."""
    message = Message(
        subject="Connection test",
        body=ItemBody(content="token 42"),
        to_recipients=[Recipient(email_address=EmailAddress(address="seed@ours.example"))],
    )
    body = SendMailPostRequestBody(message=message, save_to_sent_items=False)

    await graph.users.by_user_id("jim@contoso.com").send_mail.post(body)

    [sent] = fake.sent_mail
    assert (sent["user_principal_name"], sent["recipients"]) == ("jim@contoso.com", ["seed@ours.example"])
    assert sent["save_to_sent_items"] is False
    assert sent["message"]["subject"] == "Connection test"
