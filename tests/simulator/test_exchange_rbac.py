"""Exchange RBAC for Applications in the simulator: the send probe's answers, union semantics, the scenario.

The example's "scoped" app has no Entra Mail.Send; an Exchange assignment of Application Mail.Send covers
the group "Outbound senders" (jim, pam, oscar). docs/graph-client.md ("The send probe") has the sources.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from m365connect.simulator import FakeMicrosoft
from m365connect.simulator.scenario import ScenarioError, load_scenario, parse_scenario

from .example import APPS, EXAMPLE

Bearer = Callable[[str], dict[str, str]]
PROBE = {"message": {"subject": "permission check"}, "saveToSentItems": False}  # no recipients
DENIED = (403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")
NO_RECIPIENTS = (
    400,
    "ErrorInvalidRecipients",
    "At least one recipient isn't valid., A message can't be sent because it contains no recipients.",
)
MESSAGE = {"message": {"subject": "hi", "toRecipients": [{"emailAddress": {"address": "a@ours.example"}}]}}


def _send(client: httpx.Client, bearer: Bearer, app: str, user: str, body: dict[str, Any]) -> tuple[Any, ...]:
    response = client.post(f"/v1.0/users/{user}/sendMail", json=body, headers=bearer(app))
    if response.status_code == 202:
        return (202,)
    error = response.json()["error"]
    return response.status_code, error["code"], error["message"]


@pytest.mark.parametrize(
    ("app", "user", "answer"),
    [
        ("scoped", "jim@contoso.com", NO_RECIPIENTS),  # in the group: authorised, then the message fails
        ("scoped", "oscar.martinez@contoso.com", NO_RECIPIENTS),
        ("scoped", "nate@contoso.com", DENIED),  # outside the scope
        ("scoped", "accounting@contoso.com", DENIED),
        ("connector", "nate@contoso.com", NO_RECIPIENTS),  # Entra Mail.Send: every mailbox
        ("reader", "jim@contoso.com", DENIED),  # no grant anywhere
    ],
)
def test_the_send_probe_answers_by_scope_and_sends_nothing(
    client: httpx.Client, bearer: Bearer, fake: FakeMicrosoft, app: str, user: str, answer: tuple[Any, ...]
) -> None:
    assert _send(client, bearer, app, user, PROBE) == answer
    assert fake.sent_mail == []


def test_a_scoped_app_really_sends_in_scope_and_only_there(
    client: httpx.Client, bearer: Bearer, fake: FakeMicrosoft
) -> None:
    assert _send(client, bearer, "scoped", "pam@contoso.com", MESSAGE) == (202,)
    assert _send(client, bearer, "scoped", "nate@contoso.com", MESSAGE) == DENIED
    assert [(m["from"], m["client_id"]) for m in fake.sent_mail] == [
        ("pam@contoso.com", APPS["scoped"].client_id)
    ]


def test_an_assignment_takes_effect_after_its_propagation_delay(
    client: httpx.Client, bearer: Bearer, fake: FakeMicrosoft
) -> None:
    scenario = fake.scenario
    changed = scenario.model_copy(deep=True)
    changed.tenants[0].exchange_role_assignments[0].propagation_seconds = 7200
    fake.change_directory(changed)
    try:
        assert _send(client, bearer, "scoped", "jim@contoso.com", PROBE) == DENIED
    finally:
        fake.change_directory(scenario)
    assert _send(client, bearer, "scoped", "jim@contoso.com", PROBE) == NO_RECIPIENTS


@pytest.mark.parametrize(
    ("assignment", "problem"),
    [
        ({"app": "00000000-0000-0000-0000-000000000001", "role": "Application Mail.Send"}, "unknown app"),
        ({"role": "Application Mail.Send", "scope": {"group": "Nobody"}}, "unknown group"),
        ({"role": "Application Mail.Send", "scope": {"mailboxes": ["who@contoso.com"]}}, "no user"),
        ({"role": "Application Mail.Send", "scope": {}}, "either mailboxes or a group"),
        ({"role": "Mail.Send"}, "role"),
    ],
)
def test_the_scenario_refuses_assignments_that_name_nothing(assignment: dict[str, Any], problem: str) -> None:
    data = load_scenario(EXAMPLE).model_dump(mode="json")
    data["tenants"][0]["exchange_role_assignments"] = [{"app": APPS["scoped"].client_id, **assignment}]
    with pytest.raises(ScenarioError, match=problem):
        parse_scenario(data)
