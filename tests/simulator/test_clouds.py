"""The simulator serves every national cloud under /clouds/<name>, with that cloud's Graph resource only."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from m365connect.simulator import FakeMicrosoft

from .example import CONTOSO, token_form

USGOV_SCOPE = "https://graph.microsoft.us/.default"


def _claims(token: str) -> dict[str, Any]:
    segment = token.split(".")[1]
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    return claims


@pytest.fixture
def contoso_in_usgov(fake: FakeMicrosoft) -> Iterator[None]:
    """The example scenario with Contoso living in the GCC High cloud."""
    scenario = fake.scenario
    tenants = [
        tenant.model_copy(update={"cloud": "usgov"}) if str(tenant.id) == CONTOSO else tenant
        for tenant in scenario.tenants
    ]
    fake.change_directory(scenario.model_copy(update={"tenants": tenants}))
    yield
    fake.change_directory(scenario)


def _token(client: httpx.Client, prefix: str, **form: str) -> httpx.Response:
    return client.post(f"{prefix}/{CONTOSO}/oauth2/v2.0/token", data=token_form("connector", **form))


@pytest.mark.usefixtures("contoso_in_usgov")
def test_a_usgov_token_carries_the_usgov_audience_and_reads_usgov_graph(client: httpx.Client) -> None:
    response = _token(client, "/clouds/usgov", scope=USGOV_SCOPE)

    assert response.status_code == 200, response.text
    token = response.json()["access_token"]
    assert _claims(token)["aud"] == "https://graph.microsoft.us"
    bearer = {"Authorization": f"Bearer {token}"}
    assert client.get("/clouds/usgov/v1.0/users", headers=bearer).status_code == 200
    # Tokens of a national cloud are not interchangeable: the global Graph refuses the audience.
    refused = client.get("/v1.0/users", headers=bearer)
    assert refused.status_code == 401
    assert "Invalid audience" in refused.json()["error"]["message"]


@pytest.mark.usefixtures("contoso_in_usgov")
def test_a_usgov_tenant_is_not_found_in_the_global_cloud(client: httpx.Client) -> None:
    response = _token(client, "")

    assert response.status_code == 400
    assert response.json()["error_codes"] == [90002]


@pytest.mark.usefixtures("contoso_in_usgov")
def test_the_global_graph_scope_in_the_usgov_cloud_is_aadsts500011(client: httpx.Client) -> None:
    response = _token(client, "/clouds/usgov")  # the form's default scope: graph.microsoft.com

    assert response.status_code == 400
    body = response.json()
    assert (body["error"], body["error_codes"]) == ("invalid_resource", [500011])
    assert "https://graph.microsoft.com was not found" in body["error_description"]


def test_another_clouds_scope_in_the_global_cloud_is_aadsts500011(client: httpx.Client) -> None:
    response = _token(client, "", scope="https://microsoftgraph.chinacloudapi.cn/.default")

    assert response.status_code == 400
    assert response.json()["error_codes"] == [500011]


def test_graphs_app_id_is_a_valid_resource_in_every_cloud(client: httpx.Client, fake: FakeMicrosoft) -> None:
    scenario = fake.scenario
    tenants = [t.model_copy(update={"cloud": "china"}) for t in scenario.tenants]
    fake.change_directory(scenario.model_copy(update={"tenants": tenants}))
    try:
        scope = "00000003-0000-0000-c000-000000000000/.default"
        response = _token(client, "/clouds/china", scope=scope)
    finally:
        fake.change_directory(scenario)

    assert response.status_code == 200, response.text
    assert _claims(response.json()["access_token"])["aud"] == "00000003-0000-0000-c000-000000000000"


@pytest.mark.usefixtures("contoso_in_usgov")
def test_the_stats_count_requests_per_cloud(client: httpx.Client, fake: FakeMicrosoft) -> None:
    fake.stats.reset()
    token = _token(client, "/clouds/usgov", scope=USGOV_SCOPE).json()["access_token"]
    client.get("/clouds/usgov/v1.0/users", headers={"Authorization": f"Bearer {token}"})

    assert client.get("/_simulator/stats/clouds").json() == {
        "usgov": {"token_requests": 1, "graph_requests": 1}
    }


def test_the_scenario_refuses_an_unknown_cloud(fake: FakeMicrosoft) -> None:
    tenant = fake.scenario.tenants[0].model_dump(mode="json")
    with pytest.raises(ValueError, match="cloud"):
        type(fake.scenario.tenants[0]).model_validate({**tenant, "cloud": "mars"})


@pytest.mark.usefixtures("contoso_in_usgov")
def test_the_usgov_discovery_document_names_the_cloud_and_its_prefix(client: httpx.Client) -> None:
    response = client.get(f"/clouds/usgov/{CONTOSO}/v2.0/.well-known/openid-configuration")

    assert response.status_code == 200, response.text
    document = response.json()
    assert (document["cloud_instance_name"], document["msgraph_host"]) == (
        "microsoftonline.us",
        "graph.microsoft.us",
    )
    assert document["token_endpoint"].endswith(f"/clouds/usgov/{CONTOSO}/oauth2/v2.0/token")
