"""Admin endpoints: counters (with DNS), partial fault updates and the sent-mail record."""

from __future__ import annotations

from collections.abc import Callable

import dns.resolver
import httpx
import pytest

from m365connect.simulator import FakeMicrosoft

from .example import CONTOSO, token_form

Bearer = Callable[[str], dict[str, str]]


def _resolver(fake: FakeMicrosoft) -> dns.resolver.Resolver:
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = ["127.0.0.1"]
    resolver.port = fake.dns_port
    return resolver


def test_stats_count_tokens_graph_batches_items_throttles_and_dns(
    client: httpx.Client, bearer: Bearer, fake: FakeMicrosoft
) -> None:
    headers = bearer("connector")
    assert client.post("/_simulator/stats/reset").json()["graph_requests"] == 0

    client.post(f"/{CONTOSO}/oauth2/v2.0/token", data=token_form("connector"))
    client.get("/v1.0/users/jim@contoso.com", headers=headers)
    items = [{"id": str(i), "method": "GET", "url": "/users/jim@contoso.com"} for i in range(3)]
    client.post("/v1.0/$batch", json={"requests": items}, headers=headers)
    fake.faults.graph_throttle_rate = 1.0
    client.post("/v1.0/$batch", json={"requests": items[:2]}, headers=headers)
    _resolver(fake).resolve("contoso.com", "TXT")

    assert client.get("/_simulator/stats").json() == {
        "token_requests": 1,
        "graph_requests": 3,
        "batch_requests": 2,
        "batch_items": 5,
        "throttled": 2,
        "dns_queries": 1,
    }


def test_reset_zeroes_every_counter(client: httpx.Client, bearer: Bearer, fake: FakeMicrosoft) -> None:
    client.get("/v1.0/users", headers=bearer("connector"))
    _resolver(fake).resolve("contoso.com", "TXT")

    response = client.post("/_simulator/stats/reset")

    assert set(response.json().values()) == {0}
    assert fake.stats.snapshot() == response.json()


def test_faults_get_and_partial_put(client: httpx.Client, fake: FakeMicrosoft) -> None:
    before = client.get("/_simulator/faults").json()

    response = client.put("/_simulator/faults", json={"graph_throttle_rate": 0.25, "latency_ms": 5})

    assert response.status_code == 200
    assert response.json() == {**before, "graph_throttle_rate": 0.25, "latency_ms": 5}
    assert client.get("/_simulator/faults").json() == response.json()
    assert (fake.faults.graph_throttle_rate, fake.faults.latency_ms) == (0.25, 5)


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        ({"graph_throttle_rate": 0.5, "colour": "red"}, "colour: Extra inputs are not permitted"),
        ({"graph_throttle_rate": 2}, "graph_throttle_rate: Input should be less than or equal to 1"),
        ({"graph_retry_after": 0}, "graph_retry_after: Input should be greater than 0"),
        ([1, 2], "JSON object"),
    ],
)
def test_invalid_fault_updates_change_nothing(
    client: httpx.Client, fake: FakeMicrosoft, payload: object, problem: str
) -> None:
    response = client.put("/_simulator/faults", json=payload)

    assert response.status_code == 400
    assert problem in response.json()["error"]["message"]
    assert fake.faults.graph_throttle_rate == 0.0


def test_sent_mail_can_be_cleared(client: httpx.Client, bearer: Bearer) -> None:
    message = {"message": {"toRecipients": [{"emailAddress": {"address": "seed@ours.example"}}]}}
    client.post("/v1.0/users/pam@contoso.com/sendMail", json=message, headers=bearer("connector"))
    assert len(client.get("/_simulator/sent-mail").json()["value"]) == 1

    assert client.delete("/_simulator/sent-mail").status_code == 204
    assert client.get("/_simulator/sent-mail").json() == {"value": []}


def test_unknown_paths_are_404(client: httpx.Client) -> None:
    response = client.get("/nothing/here")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NotFound"
