"""Scenario loading: YAML and JSON, resolved defaults, strict validation with readable errors."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from m365connect.simulator import Scenario, ScenarioError, load_scenario
from m365connect.simulator.directory import Directory
from m365connect.simulator.scenario import DEFAULT_SKU_ID, parse_scenario

from .example import CONTOSO, EXAMPLE

TENANT = "11111111-2222-3333-4444-555555555555"


def _scenario(**user: Any) -> dict[str, Any]:
    base = {"user_principal_name": "a@example.com", "display_name": "A", **user}
    return {"tenants": [{"id": TENANT, "domains": ["example.com"], "users": [base]}]}


def test_example_scenario_loads() -> None:
    scenario = load_scenario(EXAMPLE)

    assert str(scenario.tenants[0].id) == CONTOSO
    assert "spf.protection.outlook.com" in scenario.dns.zones
    assert scenario.dns.servfail == ["broken.example"]


def test_json_and_yaml_give_the_same_scenario(tmp_path: Path) -> None:
    data = yaml.safe_load(EXAMPLE.read_text())
    json_path = tmp_path / "scenario.json"
    json_path.write_text(json.dumps(data, default=str))
    unnamed = tmp_path / "scenario.txt"  # no telling extension: JSON is recognised by its content
    unnamed.write_text(json.dumps(data, default=str))

    assert load_scenario(json_path) == load_scenario(EXAMPLE)
    assert load_scenario(unnamed) == load_scenario(EXAMPLE)


def test_user_defaults_are_resolved() -> None:
    scenario = parse_scenario(_scenario(proxy_addresses=["smtp:alias@example.com", "SMTP:a@example.com"]))
    user = Directory(scenario).tenants[0].users[0]

    assert user.id == str(uuid.uuid5(uuid.UUID(TENANT), "a@example.com"))
    assert user.mail == "a@example.com"
    assert user.licenses == (DEFAULT_SKU_ID,)
    assert user.account_enabled is True
    assert user.user_type == "Member"


def test_mail_is_null_without_proxy_addresses_and_no_licence_without_user_mailbox() -> None:
    user = Directory(parse_scenario(_scenario(mailbox="shared"))).tenants[0].users[0]

    assert user.mail is None
    assert user.licenses == ()


def test_explicit_null_mail_is_kept() -> None:
    user = Directory(parse_scenario(_scenario(proxy_addresses=["SMTP:a@example.com"], mail=None))).tenants[0]

    assert user.users[0].mail is None


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"tenants": [], "colour": "red"}, "colour: Extra inputs are not permitted"),
        (_scenario(nickname="x"), "tenants[0].users[0].nickname: Extra inputs are not permitted"),
        (_scenario(mailbox="mailbox"), "tenants[0].users[0].mailbox: Input should be"),
        (_scenario(proxy_addresses=["SMTP:a@example.com", "SMTP:b@example.com"]), "exactly one primary"),
        (_scenario(proxy_addresses=["a@example.com"]), "is not a proxy address"),
        (_scenario(user_principal_name="a@elsewhere.com"), "UPN suffix is not a domain of the tenant"),
        (_scenario(blocked_apps=[str(uuid.uuid4())]), "blocked_apps names unknown apps"),
        ({"faults": {"graph_throttle_rate": 1.5}}, "faults.graph_throttle_rate: Input should be less than"),
        ({"faults": {"retry": 1}}, "faults.retry: Extra inputs are not permitted"),
    ],
)
def test_invalid_scenarios_are_rejected_with_their_location(data: dict[str, Any], expected: str) -> None:
    with pytest.raises(ScenarioError, match="invalid scenario") as caught:
        parse_scenario(data)

    assert expected in str(caught.value)


def test_duplicate_address_across_users_is_rejected() -> None:
    data = _scenario(proxy_addresses=["SMTP:a@example.com", "smtp:shared@example.com"])
    data["tenants"][0]["users"].append(
        {
            "user_principal_name": "b@example.com",
            "display_name": "B",
            "proxy_addresses": ["SMTP:Shared@Example.com"],
        }
    )

    with pytest.raises(ScenarioError, match=r"duplicate address 'shared@example\.com'"):
        parse_scenario(data)


def test_duplicate_domain_across_tenants_is_rejected() -> None:
    data = _scenario()
    data["tenants"].append({"id": str(uuid.uuid4()), "domains": ["EXAMPLE.com"]})

    with pytest.raises(ScenarioError, match=r"duplicate domain 'example\.com'"):
        parse_scenario(data)


def test_secret_expiry_needs_a_time_zone() -> None:
    data = {"tenants": [{"id": TENANT, "apps": [{"client_id": str(uuid.uuid4()), "name": "x"}]}]}
    data["tenants"][0]["apps"][0]["secrets"] = [{"value": "s", "expires_at": "2030-01-01T00:00:00"}]

    with pytest.raises(ScenarioError, match=r"secrets\[0\]\.expires_at"):
        parse_scenario(data)


def test_unreadable_files_raise_scenario_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("tenants: [\n")

    with pytest.raises(ScenarioError, match="not valid YAML or JSON"):
        load_scenario(broken)
    with pytest.raises(ScenarioError, match="cannot read"):
        load_scenario(tmp_path / "missing.yaml")


def test_empty_file_is_an_empty_scenario(tmp_path: Path) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("")

    assert load_scenario(empty) == Scenario()
