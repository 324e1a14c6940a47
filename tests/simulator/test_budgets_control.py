"""The token endpoint's budget, the budgets off by default, the scenario option and the admin API."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from m365connect.simulator import Budgets, FakeMicrosoft, ScenarioError, load_scenario
from m365connect.simulator.scenario import parse_scenario

from .budgeted import LARGE, SMALL, ManualClock, token_form
from .example import EXAMPLE

Bearer = Callable[..., dict[str, str]]
BUDGET_HEADERS = {
    "retry-after",
    "x-ms-resource-unit",
    "x-ms-throttle-limit-percentage",
    "x-ms-throttle-scope",
}


def test_token_requests_over_the_budget_get_429_retry_after_60(
    budgeted: FakeMicrosoft, budget_client: httpx.Client, clock: ManualClock
) -> None:
    budget_client.put("/_simulator/budgets", json={"enabled": True, "token_requests": 3}).raise_for_status()
    url = f"/{SMALL.id}/oauth2/v2.0/token"

    statuses = [budget_client.post(url, data=token_form(SMALL)).status_code for _ in range(3)]
    refused = budget_client.post(url, data=token_form(SMALL))
    other_app = budget_client.post(url, data=token_form(SMALL, 1))
    by_domain = budget_client.post(f"/{SMALL.domain}/oauth2/v2.0/token", data=token_form(SMALL))

    assert statuses == [200] * 3
    assert (refused.status_code, refused.headers["Retry-After"], refused.text) == (
        429,
        "60",
        "Too Many Requests",
    )
    assert other_app.status_code == 200  # per app
    assert by_domain.status_code == 429  # the tenant named by its domain is the same tenant
    clock.advance(59)
    assert budget_client.post(url, data=token_form(SMALL)).status_code == 429
    clock.advance(1)
    assert budget_client.post(url, data=token_form(SMALL)).status_code == 200
    stats = budget_client.get("/_simulator/budgets/stats").json()
    assert stats["throttled"]["token"] == 3
    assert budget_client.get("/_simulator/stats").json()["throttled"] >= 3  # counted with every 429 sent


def test_budgets_off_change_nothing(
    budgeted: FakeMicrosoft, budget_client: httpx.Client, budget_bearer: Bearer
) -> None:
    tiny = {"directory_units_small": 1, "outlook_requests": 1, "outlook_concurrency": 1, "token_requests": 1}
    budget_client.put("/_simulator/budgets", json=tiny).raise_for_status()
    headers = budget_bearer(SMALL)
    settings = f"/v1.0/users/{SMALL.mailbox(1)}/mailboxSettings"

    answers = [budget_client.get("/v1.0/users", headers=headers) for _ in range(3)]
    answers += [budget_client.get(settings, headers=headers) for _ in range(3)]
    answers += [
        budget_client.post(f"/{SMALL.id}/oauth2/v2.0/token", data=token_form(SMALL)) for _ in range(3)
    ]

    assert [answer.status_code for answer in answers] == [200] * 9
    assert not any(BUDGET_HEADERS & set(answer.headers) for answer in answers)
    stats = budget_client.get("/_simulator/budgets/stats").json()
    assert stats == {
        "enabled": False,
        "throttled": {"directory": 0, "outlook_requests": 0, "outlook_concurrency": 0, "token": 0},
        "admitted": {"directory": 0, "outlook": 0, "token": 0},
        "resource_units": {},
        "outlook_peak_concurrency": 0,
        "outlook_in_flight": 0,
    }


def test_admin_budgets_partial_update_is_validated_as_a_whole(
    budgeted: FakeMicrosoft, budget_client: httpx.Client
) -> None:
    before = budget_client.get("/_simulator/budgets").json()
    assert before == Budgets().model_dump()
    assert before["enabled"] is False

    for bad in (
        {"enabled": True, "outlook_concurrency_scope": "tenant"},
        {"outlook_requests": 0},
        {"nope": 1},
        [1],
    ):
        response = budget_client.put("/_simulator/budgets", json=bad)
        assert (response.status_code, response.json()["error"]["code"]) == (400, "BadRequest")
    assert budget_client.get("/_simulator/budgets").json() == before  # nothing was applied

    changed = budget_client.put(
        "/_simulator/budgets", json={"enabled": True, "outlook_concurrency_scope": "mailbox"}
    )
    assert changed.json() == {**before, "enabled": True, "outlook_concurrency_scope": "mailbox"}


def test_admin_stats_count_units_per_tenant_and_reset_refills_the_budgets(
    budgeted: FakeMicrosoft, budget_client: httpx.Client, budget_bearer: Bearer
) -> None:
    budget_client.put("/_simulator/budgets", json={"enabled": True, "directory_units_large": 3})
    headers = budget_bearer(LARGE)
    statuses = [budget_client.get("/v1.0/users", headers=headers).status_code for _ in range(2)]
    budget_client.get("/v1.0/users?$select=id", headers=budget_bearer(SMALL))

    stats = budget_client.get("/_simulator/budgets/stats").json()
    assert statuses == [200, 429]
    assert stats["resource_units"] == {LARGE.id: 2, SMALL.id: 1}
    assert (stats["throttled"]["directory"], stats["admitted"]["directory"]) == (1, 2)

    reset = budget_client.post("/_simulator/budgets/reset").json()
    assert (reset["resource_units"], reset["throttled"]["directory"]) == ({}, 0)
    assert budget_client.get("/v1.0/users", headers=headers).status_code == 200  # a full budget again


def test_scenario_turns_budgets_on_and_rejects_unknown_knobs() -> None:
    scenario = parse_scenario({"budgets": {"enabled": True, "token_requests": 5}})
    assert (scenario.budgets.enabled, scenario.budgets.token_requests) == (True, 5)
    assert parse_scenario({}).budgets == Budgets()
    with pytest.raises(ScenarioError, match=r"budgets\.outlook_concurrency_scope"):
        parse_scenario({"budgets": {"outlook_concurrency_scope": "tenant"}})
    with pytest.raises(ScenarioError, match=r"budgets\.rate"):
        parse_scenario({"budgets": {"rate": 1}})
    assert load_scenario(EXAMPLE).budgets.enabled is False  # the example scenario keeps them off
