"""The identity and access budget: resource units per app and tenant by tenant size, costs, headers, 429."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from m365connect.simulator import FakeMicrosoft

from .budgeted import LARGE, MEDIUM, SMALL, TENANTS, ManualClock

Bearer = Callable[..., dict[str, str]]
# GET users (cost 2) through the proxy-address index: no match, so cheap to answer thousands of times.
UNMATCHED = "/users?$filter=proxyAddresses/any(x:x%20eq%20'smtp:nobody@nowhere.example')"


def _batch(client: httpx.Client, headers: dict[str, str], url: str, count: int = 20) -> list[dict[str, Any]]:
    items = [{"id": str(i), "method": "GET", "url": url} for i in range(count)]
    response = client.post("/v1.0/$batch", json={"requests": items}, headers=headers)
    assert response.status_code == 200
    answers: list[dict[str, Any]] = response.json()["responses"]
    return sorted(answers, key=lambda answer: int(answer["id"]))


@pytest.mark.parametrize(("size", "limit"), [("S", 3_500), ("M", 5_000), ("L", 8_000)])
def test_each_tenant_size_gets_its_published_units_and_the_item_past_them_429(
    budgeted: FakeMicrosoft,
    budget_client: httpx.Client,
    budget_bearer: Bearer,
    clock: ManualClock,
    size: str,
    limit: int,
) -> None:
    tenant = TENANTS[size]
    budgeted.budgets.enabled = True
    headers = budget_bearer(tenant)
    admitted, refused = 0, []
    while not refused:
        answers = _batch(budget_client, headers, UNMATCHED)
        admitted += sum(answer["status"] == 200 for answer in answers)
        refused = [answer for answer in answers if answer["status"] == 429]

    assert admitted * 2 == limit  # every item cost 2 units, and exactly the limit was let through
    assert len(refused) == 20 - (limit // 2) % 20  # the rest of the batch that crossed the edge
    first = refused[0]
    assert first["body"]["error"]["code"] == "TooManyRequests"
    assert first["headers"]["Retry-After"] == "1"
    assert first["headers"]["x-ms-resource-unit"] == "2"
    assert first["headers"]["x-ms-throttle-information"] == "ResourceUnitLimitExceeded"
    client_id = tenant.apps[0][0]
    assert first["headers"]["x-ms-throttle-scope"] == f"Tenant_Application/ReadWrite/{client_id}/{tenant.id}"
    assert budgeted.budget_meter.snapshot()["resource_units"] == {tenant.id: limit}
    assert budgeted.budget_meter.snapshot()["throttled"]["directory"] == len(refused)

    clock.advance(int(first["headers"]["Retry-After"]))
    retried = budget_client.get(f"/v1.0{UNMATCHED}", headers=headers)
    assert retried.status_code == 200
    assert retried.headers["x-ms-resource-unit"] == "2"


@pytest.mark.parametrize(
    ("url", "cost"),
    [
        ("/users", 2),  # GET users: 2
        ("/users?$select=id", 1),  # $select: -1
        ("/users?$top=5", 1),  # $top under 20: -1
        ("/users?$top=20", 2),
        ("/users?$top=5&$select=id,mail", 1),  # never below 1
        (UNMATCHED.replace("?", "?$select=id&"), 1),  # the service's lookup by proxy address
        ("/users/user1@small.budget.example", 1),  # any other identity path: 1
        ("/users/user1@small.budget.example?$select=id", 1),
        ("/users('user1@small.budget.example')", 1),
        ("/users/nobody@small.budget.example", 1),  # a 404 is charged and says so
    ],
)
def test_every_directory_answer_carries_its_cost_in_resource_units(
    budgeted: FakeMicrosoft, budget_client: httpx.Client, budget_bearer: Bearer, url: str, cost: int
) -> None:
    budgeted.budgets.enabled = True

    response = budget_client.get(f"/v1.0{url}", headers=budget_bearer(SMALL))

    assert response.status_code in (200, 404)
    assert response.headers["x-ms-resource-unit"] == str(cost)
    assert "x-ms-throttle-limit-percentage" not in response.headers
    assert budgeted.budget_meter.snapshot()["resource_units"] == {SMALL.id: cost}


def test_percentage_header_above_0_8_then_429_until_the_units_drain(
    budgeted: FakeMicrosoft, budget_client: httpx.Client, budget_bearer: Bearer, clock: ManualClock
) -> None:
    budgeted.budgets.update({"enabled": True, "directory_units_small": 10})
    headers = budget_bearer(SMALL)
    url = "/v1.0/users/user1@small.budget.example"
    answers = [budget_client.get(url, headers=headers) for _ in range(10)]
    percentages = [answer.headers.get("x-ms-throttle-limit-percentage") for answer in answers]

    assert percentages == [None] * 8 + ["0.90", "1.00"]  # "more than 0.8 of its limit"
    listing = budget_client.get("/v1.0/users", headers=headers)  # costs 2: 2 s of refill (1 unit/s)
    assert (listing.status_code, listing.headers["Retry-After"]) == (429, "2")
    assert listing.headers["x-ms-throttle-limit-percentage"] == "1.20"
    clock.advance(1)
    early = budget_client.get("/v1.0/users", headers=headers)
    assert (early.status_code, early.headers["Retry-After"]) == (429, "1")
    other_app = budget_client.get("/v1.0/users", headers=budget_bearer(SMALL, 1))
    assert other_app.status_code == 200  # the budget is per app and tenant
    clock.advance(1)
    assert budget_client.get("/v1.0/users", headers=headers).status_code == 200


def test_tenants_do_not_share_a_budget(
    budgeted: FakeMicrosoft, budget_client: httpx.Client, budget_bearer: Bearer
) -> None:
    budgeted.budgets.update(
        {"enabled": True, "directory_units_small": 1, "directory_units_medium": 2, "directory_units_large": 3}
    )
    statuses = {
        tenant.domain: [
            budget_client.get("/v1.0/users?$select=id", headers=budget_bearer(tenant)).status_code
            for _ in range(4)
        ]
        for tenant in (SMALL, MEDIUM, LARGE)
    }

    assert statuses == {
        SMALL.domain: [200, 429, 429, 429],
        MEDIUM.domain: [200, 200, 429, 429],
        LARGE.domain: [200, 200, 200, 429],
    }
