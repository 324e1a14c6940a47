"""National clouds end to end: a `usgov` credential is verified, rotated and used by a bulk through the
usgov URLs with the usgov scope (the simulator serves GCC High under /clouds/usgov)."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from m365connect.crypto import generate_key
from m365connect.settings import Settings
from m365connect.simulator import FakeMicrosoft
from tests import scenario_values as sv
from tests.factories import CREDENTIALS, FABRIKAM, bulk, create_credential, credential_body
from tests.helpers import assert_code, headers


@pytest.fixture
def settings(database_url: str, microsoft: FakeMicrosoft) -> Settings:
    """The conftest settings, plus GCC High pointed at the simulator's usgov prefix."""
    usgov = f"{microsoft.base_url}/clouds/usgov"
    return Settings(
        database_url=database_url,
        encryption_keys=generate_key(),
        login_url=microsoft.base_url,
        graph_url=microsoft.base_url,
        cloud_urls=json.dumps({"usgov": {"login_url": usgov, "graph_url": usgov}}),
        ca_bundle=microsoft.ca_path,
        dns_nameservers=f"127.0.0.1:{microsoft.dns_port}",
        dns_timeout=0.5,
    )


@pytest.fixture
def contoso_in_usgov(microsoft: FakeMicrosoft) -> None:
    """Contoso is a GCC High tenant: only the usgov login and Graph know it."""
    scenario = microsoft.scenario
    tenants = [
        tenant.model_copy(update={"cloud": "usgov"}) if str(tenant.id) == sv.CONTOSO_TENANT else tenant
        for tenant in scenario.tenants
    ]
    microsoft.change_directory(scenario.model_copy(update={"tenants": tenants}))
    # no teardown: the microsoft fixture puts the example directory back


@pytest.mark.usefixtures("contoso_in_usgov")
async def test_a_usgov_credential_verifies_and_connects_through_the_usgov_urls(
    client: httpx.AsyncClient, api_key: str, microsoft: FakeMicrosoft
) -> None:
    created = await create_credential(client, api_key=api_key, cloud="usgov")
    assert created["cloud"] == "usgov"
    assert created["granted_permissions"]  # the token came from the usgov cloud, with its roles
    # The simulator answers the usgov prefix only for the usgov scope (else AADSTS500011) and its Graph only
    # for a token whose audience is https://graph.microsoft.us: counting the prefix proves both.
    assert microsoft.stats.by_cloud == {"usgov": {"token_requests": 1, "graph_requests": 0}}

    response = await bulk(client, api_key=api_key, emails=["jim@contoso.com"])

    assert response.status_code == 201, response.text
    assert response.json()[0]["success"] is True
    assert set(microsoft.stats.by_cloud) == {"usgov"}  # nothing went to the global cloud
    assert microsoft.stats.by_cloud["usgov"]["graph_requests"] >= 1


@pytest.mark.usefixtures("contoso_in_usgov")
async def test_a_usgov_tenant_as_a_global_credential_is_not_found(
    client: httpx.AsyncClient, api_key: str, microsoft: FakeMicrosoft
) -> None:
    response = await client.post(CREDENTIALS, json=credential_body(), headers=headers(api_key))

    assert_code(response, "INVALID_TENANT_ID")
    assert microsoft.stats.by_cloud == {"global": {"token_requests": 1, "graph_requests": 0}}


@pytest.mark.usefixtures("contoso_in_usgov")
async def test_a_usgov_rotation_asks_the_usgov_cloud(
    client: httpx.AsyncClient, api_key: str, microsoft: FakeMicrosoft
) -> None:
    created = await create_credential(client, api_key=api_key, cloud="usgov")
    microsoft.stats.reset()

    response = await client.patch(
        f"{CREDENTIALS}/{created['credential_id']}",
        json={"client_secret": sv.WORKING_SECRET_2, "secret_expires_at": sv.FUTURE},
        headers=headers(api_key),
    )

    assert response.status_code == 200, response.text
    assert response.json()["cloud"] == "usgov"
    assert microsoft.stats.by_cloud == {"usgov": {"token_requests": 1, "graph_requests": 0}}


async def test_cloud_defaults_to_global(client: httpx.AsyncClient, api_key: str) -> None:
    created = await create_credential(client, api_key=api_key)

    assert created["cloud"] == "global"
    listed = (await client.get(CREDENTIALS, headers=headers(api_key))).json()["credentials"]
    assert [item["cloud"] for item in listed] == ["global"]


@pytest.mark.parametrize("field", ["cloud", "tenant_id", "client_id"])
async def test_a_patch_that_sends_an_immutable_field_is_a_400_naming_it(
    client: httpx.AsyncClient, api_key: str, field: str
) -> None:
    created = await create_credential(client, api_key=api_key)

    response = await client.patch(
        f"{CREDENTIALS}/{created['credential_id']}",
        json={"name": "renamed", field: "usgov" if field == "cloud" else created[field]},
        headers=headers(api_key),
    )

    assert response.status_code == 400
    assert response.json()["detail"] == f"Field '{field}' cannot be changed"
    after = (await client.get(CREDENTIALS, headers=headers(api_key))).json()["credentials"][0]
    assert (after["name"], after["cloud"]) == (created["name"], "global")  # nothing changed


@pytest.mark.parametrize("cloud", ["mars", "USGOV", "", 1, None])
async def test_an_unknown_cloud_is_a_400_naming_the_field(
    client: httpx.AsyncClient, api_key: str, cloud: object, microsoft: FakeMicrosoft
) -> None:
    response = await client.post(CREDENTIALS, json=credential_body(cloud=cloud), headers=headers(api_key))

    assert response.status_code == 400
    assert response.json()["detail"].startswith("Field 'cloud' is invalid")
    assert microsoft.stats.token_requests == 0


@pytest.mark.parametrize(
    ("tenant_id", "cloud"),
    [
        ("contoso.onmicrosoft.us", "global"),
        ("contoso.onmicrosoft.com", "usgov"),
        ("contoso.onmicrosoft.com", "usgov-dod"),
        ("contoso.partner.onmschina.cn", "usgov"),
        ("contoso.onmicrosoft.us", "china"),
    ],
)
async def test_a_tenant_domain_of_another_cloud_is_refused_before_microsoft_is_asked(
    client: httpx.AsyncClient, api_key: str, microsoft: FakeMicrosoft, tenant_id: str, cloud: str
) -> None:
    body = credential_body(tenant_id=tenant_id, cloud=cloud)
    response = await client.post(CREDENTIALS, json=body, headers=headers(api_key))

    assert_code(response, "INVALID_TENANT_ID")
    assert microsoft.stats.token_requests == 0


@pytest.mark.usefixtures("contoso_in_usgov")
async def test_bulks_of_two_clouds_at_once_each_use_their_own_cloud(
    client: httpx.AsyncClient, api_key: str, other_api_key: str, microsoft: FakeMicrosoft
) -> None:
    """A usgov account and a global account connect at the same moment, three rounds: no token or Graph
    call of one crosses into the other cloud (each cloud's token cache and Graph client are its own)."""
    await create_credential(client, api_key=api_key, cloud="usgov")
    await create_credential(client, api_key=other_api_key, **FABRIKAM, secret_expires_at=sv.FUTURE)
    microsoft.stats.reset()

    for _ in range(3):
        usgov, global_ = await asyncio.gather(
            bulk(client, api_key=api_key, emails=["jim@contoso.com", "pam@contoso.com"]),
            bulk(client, api_key=other_api_key, emails=["erin@fabrikam.com"]),
        )
        assert usgov.status_code == 201, usgov.text
        assert global_.status_code == 201, global_.text

    counts = microsoft.stats.by_cloud
    assert set(counts) == {"usgov", "global"}
    assert counts["usgov"]["graph_requests"] >= 1
    assert counts["global"]["graph_requests"] >= 1


async def test_other_unknown_patch_fields_stay_ignored(client: httpx.AsyncClient, api_key: str) -> None:
    """Keeping unknown fields (to name the immutable ones) must not make them count as a change."""
    created = await create_credential(client, api_key=api_key)
    url = f"{CREDENTIALS}/{created['credential_id']}"

    only_unknown = await client.patch(url, json={"colour": "red"}, headers=headers(api_key))
    renamed = await client.patch(url, json={"name": "renamed", "colour": None}, headers=headers(api_key))

    assert only_unknown.status_code == 400
    assert only_unknown.json()["detail"].startswith("Send at least one of 'name'")
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["name"] == "renamed"


def _verdict(item: dict[str, object]) -> tuple[object, ...]:
    flags = item["deliverability"]
    assert isinstance(flags, dict)
    return tuple(flags[f"{check}_reason"] for check in ("spf", "dkim", "dmarc"))


async def test_a_usgov_domain_is_checked_against_the_usgov_include_and_dkim_targets(
    client: httpx.AsyncClient, api_key: str
) -> None:
    """Tailwind Traders publishes include:spf.protection.office365.us and DKIM CNAMEs into its
    .onmicrosoft.us initial domain: correct for its usgov credential."""
    created = await create_credential(
        client,
        api_key=api_key,
        cloud="usgov",
        tenant_id=sv.TAILWIND_TENANT,
        client_id=sv.TAILWIND_APP,
        client_secret=sv.TAILWIND_SECRET,
    )

    response = await bulk(client, api_key=api_key, emails=[sv.TAILWIND_MAILBOX])

    assert response.status_code == 201, response.text
    item = response.json()[0]
    assert item["success"] is True, item
    assert _verdict(item) == ("ok", "ok", "ok")
    assert {k: v for k, v in item["deliverability"].items() if k.endswith("_correct")} == {
        "spf_correct": True,
        "dkim_correct": True,
        "dmarc_correct": True,
    }
    assert created["cloud"] == "usgov"


@pytest.mark.usefixtures("contoso_in_usgov")
async def test_a_usgov_tenant_with_the_global_records_gets_the_usgov_verdict(
    client: httpx.AsyncClient, api_key: str
) -> None:
    """contoso.com publishes the global include and DKIM targets: wrong for a GCC High tenant's mail."""
    await create_credential(client, api_key=api_key, cloud="usgov")

    response = await bulk(client, api_key=api_key, emails=["jim@contoso.com"])

    item = response.json()[0]
    assert item["success"] is True, item
    assert _verdict(item) == ("no_microsoft_include", "cname_not_microsoft", "ok")
