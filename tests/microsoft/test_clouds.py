"""The national-cloud table as configuration: overrides, validation, tenant domains, consent links."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError
from tests.processes import EXECUTABLE, clean_env

from m365connect.codes import ErrorCode
from m365connect.explanations import CONSENT_LOGIN_URLS, Context, admin_consent_url, explain
from m365connect.microsoft.clouds import (
    CLOUD_NAMES,
    MICROSOFT_CLOUDS,
    endpoint_table,
    tenant_domain_clouds,
)
from m365connect.microsoft.token import ClientCredential, TokenRejected
from m365connect.observability.metrics import Metrics
from m365connect.settings import Settings
from m365connect.state import build_clouds

SIM = "https://127.0.0.1:8443"


def test_microsofts_endpoints_and_the_scope_of_each_cloud() -> None:
    table = endpoint_table(
        login_url="https://login.microsoftonline.com",
        graph_url="https://graph.microsoft.com",
        cloud_urls=None,
    )

    assert {cloud: (e.login_url, e.graph_url, e.scope) for cloud, e in table.items()} == {
        "global": (
            "https://login.microsoftonline.com",
            "https://graph.microsoft.com",
            "https://graph.microsoft.com/.default",
        ),
        "usgov": (
            "https://login.microsoftonline.us",
            "https://graph.microsoft.us",
            "https://graph.microsoft.us/.default",
        ),
        "usgov-dod": (
            "https://login.microsoftonline.us",
            "https://dod-graph.microsoft.us",
            "https://dod-graph.microsoft.us/.default",
        ),
        "china": (
            "https://login.partner.microsoftonline.cn",
            "https://microsoftgraph.chinacloudapi.cn",
            "https://microsoftgraph.chinacloudapi.cn/.default",
        ),
    }


def test_an_override_moves_the_urls_never_the_scope() -> None:
    overrides = json.dumps({"china": {"login_url": f"{SIM}/clouds/china/"}, "usgov": {"graph_url": SIM}})
    table = endpoint_table(login_url=SIM, graph_url=SIM, cloud_urls=overrides)

    assert (table["global"].login_url, table["global"].graph_url) == (SIM, SIM)
    assert table["china"].login_url == f"{SIM}/clouds/china"  # trailing slash dropped
    assert table["china"].graph_url == "https://microsoftgraph.chinacloudapi.cn"  # not overridden
    assert table["china"].scope == "https://microsoftgraph.chinacloudapi.cn/.default"
    assert (table["usgov"].login_url, table["usgov"].graph_url) == ("https://login.microsoftonline.us", SIM)
    assert table["usgov"].scope == "https://graph.microsoft.us/.default"


async def test_the_state_builds_one_token_client_per_cloud_with_its_own_scope() -> None:
    """The token request itself, caught by a transport: the usgov URL with the usgov scope."""
    seen: list[tuple[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        form = dict(item.split("=", 1) for item in request.content.decode().split("&"))
        seen.append((str(request.url), httpx.QueryParams(f"scope={form['scope']}")["scope"]))
        return httpx.Response(400, json={"error": "invalid_client", "error_codes": [7000215]})

    usgov = f"{SIM}/clouds/usgov"
    settings = Settings(cloud_urls=json.dumps({"usgov": {"login_url": usgov, "graph_url": usgov}}))
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        clouds = build_clouds(settings, http=http, metrics=Metrics())
        for cloud in CLOUD_NAMES:
            with pytest.raises(TokenRejected):
                await clouds.tokens(cloud).verify(ClientCredential("contoso.com", "c", "s"))

    assert seen == [
        (
            "https://login.microsoftonline.com/contoso.com/oauth2/v2.0/token",
            "https://graph.microsoft.com/.default",
        ),
        (f"{usgov}/contoso.com/oauth2/v2.0/token", "https://graph.microsoft.us/.default"),
        (
            "https://login.microsoftonline.us/contoso.com/oauth2/v2.0/token",
            "https://dod-graph.microsoft.us/.default",
        ),
        (
            "https://login.partner.microsoftonline.cn/contoso.com/oauth2/v2.0/token",
            "https://microsoftgraph.chinacloudapi.cn/.default",
        ),
    ]


BAD_CLOUD_URLS = {
    "not JSON": ("{usgov", "not JSON"),
    "not an object": ('["usgov"]', "must be a JSON object of clouds"),
    "unknown cloud": ('{"mars": {"login_url": "https://x"}}', "unknown cloud 'mars'"),
    "global": ('{"global": {"login_url": "https://x"}}', "'global' follows M365CONNECT_LOGIN_URL"),
    "unknown key": ('{"usgov": {"token_url": "https://x"}}', "usgov must be an object with login_url"),
    "empty object": ('{"usgov": {}}', "usgov must be an object with login_url"),
    "not a URL": (
        '{"usgov": {"login_url": "login.microsoftonline.us"}}',
        "usgov.login_url must be an http(s) URL",
    ),
    "not a string": ('{"china": {"graph_url": 1}}', "china.graph_url must be an http(s) URL"),
}


@pytest.mark.parametrize("case", list(BAD_CLOUD_URLS))
def test_a_bad_cloud_urls_setting_is_refused_with_its_reason(case: str) -> None:
    text, reason = BAD_CLOUD_URLS[case]
    with pytest.raises(ValidationError) as caught:
        Settings(cloud_urls=text)
    [error] = caught.value.errors()
    assert error["loc"] == ("cloud_urls",)
    assert reason in error["msg"]


def test_a_bad_cloud_urls_setting_is_one_line_at_start_up(tmp_path: Path) -> None:
    env = clean_env(M365CONNECT_CLOUD_URLS='{"usgov": {"login_url": "login.microsoftonline.us"}}')
    finished = subprocess.run(
        [str(EXECUTABLE), "api-keys", "list"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=60,
        check=False,
    )
    assert finished.stdout.splitlines() == [
        "invalid configuration: M365CONNECT_CLOUD_URLS: usgov.login_url must be an http(s) URL"
    ]
    assert finished.returncode == 2
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("tenant", "clouds"),
    [
        ("contoso.onmicrosoft.com", {"global"}),
        ("Contoso.OnMicrosoft.US", {"usgov", "usgov-dod"}),
        ("contoso.partner.onmschina.cn", {"china"}),
        ("contoso.onmschina.cn", {"china"}),
        ("contoso.com", set(CLOUD_NAMES)),  # a custom domain says nothing about the cloud
        ("onmicrosoft.us.example.com", set(CLOUD_NAMES)),
        ("6f1c2a7e-5d1b-4c39-9a3e-2f7b1d9c0a11", set(CLOUD_NAMES)),
    ],
)
def test_microsofts_initial_domains_name_their_cloud(tenant: str, clouds: set[str]) -> None:
    assert tenant_domain_clouds(tenant) == clouds


@pytest.mark.parametrize(
    ("cloud", "host"),
    [
        ("global", "https://login.microsoftonline.com"),
        ("usgov", "https://login.microsoftonline.us"),
        ("usgov-dod", "https://login.microsoftonline.us"),
        ("china", "https://login.partner.microsoftonline.cn"),
    ],
)
def test_the_consent_link_is_on_the_login_host_of_the_credentials_cloud(cloud: str, host: str) -> None:
    url = admin_consent_url(tenant_id="t.example", client_id="c-1", cloud=cloud)
    assert url == f"{host}/t.example/adminconsent?client_id=c-1"
    context = Context(tenant_id="t.example", client_id="c-1", cloud=cloud)
    assert f"{host}/t.example/adminconsent?client_id=c-1" in explain(ErrorCode.MISSING_PERMISSIONS, context)


def test_a_global_consent_link_follows_the_configured_login_url() -> None:
    url = admin_consent_url(tenant_id="t", client_id="c", login_url=f"{SIM}/", cloud="global")
    assert url == f"{SIM}/t/adminconsent?client_id=c"


def test_the_explanations_copy_of_the_login_hosts_agrees_with_the_cloud_table() -> None:
    assert dict(CONSENT_LOGIN_URLS) == {cloud: e.login_url for cloud, e in MICROSOFT_CLOUDS.items()}
