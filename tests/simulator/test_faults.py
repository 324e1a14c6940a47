"""Injected faults: Graph 429/503/malformed (plain and per batch item), token 429/503, latency, seeds."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import httpx
import pytest

from m365connect.simulator import FakeMicrosoft

from .example import CONTOSO, token_form

Bearer = Callable[[str], dict[str, str]]


@pytest.mark.parametrize(("retry_after", "header"), [(2.128, "2.128"), (0.2, "0.2"), (3, "3")])
def test_graph_throttling_answers_429_with_fractional_retry_after(
    client: httpx.Client, bearer: Bearer, fake: FakeMicrosoft, retry_after: float, header: str
) -> None:
    fake.faults.update({"graph_throttle_rate": 1.0, "graph_retry_after": retry_after})
    fake.stats.reset()

    response = client.get("/v1.0/users/jim@contoso.com", headers=bearer("connector"))

    assert (response.status_code, response.headers["retry-after"]) == (429, header)
    error = response.json()["error"]
    assert (error["code"], error["message"]) == ("TooManyRequests", "Please retry again later.")
    inner = error["innerError"]
    assert (inner["code"], inner["status"], inner["message"]) == ("429", "429", "Please retry after")
    assert inner["request-id"] == response.headers["request-id"]
    assert fake.stats.throttled == 1


def test_graph_unavailable_answers_503(client: httpx.Client, bearer: Bearer, fake: FakeMicrosoft) -> None:
    fake.faults.graph_unavailable_rate = 1.0

    response = client.get("/v1.0/users", headers=bearer("connector"))

    assert (response.status_code, response.json()["error"]["code"]) == (503, "serviceNotAvailable")
    assert response.headers["retry-after"] == "2.128"


def test_malformed_response_is_200_with_truncated_json(
    client: httpx.Client, bearer: Bearer, fake: FakeMicrosoft
) -> None:
    fake.faults.graph_malformed_rate = 1.0

    response = client.get("/v1.0/users", headers=bearer("connector"))

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    with pytest.raises(json.JSONDecodeError):
        response.json()


def test_batch_items_are_throttled_individually(
    client: httpx.Client, bearer: Bearer, fake: FakeMicrosoft
) -> None:
    fake.faults.update({"graph_throttle_rate": 1.0, "graph_retry_after": 0.5})
    send = {
        "id": "send",
        "method": "POST",
        "url": "/users/jim@contoso.com/sendMail",
        "headers": {"Content-Type": "application/json"},
        "body": {"message": {"toRecipients": [{"emailAddress": {"address": "seed@ours.example"}}]}},
    }
    requests = [{"id": "get", "method": "GET", "url": "/users/jim@contoso.com"}, send]

    response = client.post("/v1.0/$batch", json={"requests": requests}, headers=bearer("connector"))

    assert response.status_code == 200
    for answer in response.json()["responses"]:
        assert (answer["status"], answer["headers"]["Retry-After"]) == (429, "0.5")
        assert answer["body"]["error"]["code"] == "TooManyRequests"
    assert fake.sent_mail == []  # a throttled sendMail is not executed


def test_batch_items_can_be_unavailable(client: httpx.Client, bearer: Bearer, fake: FakeMicrosoft) -> None:
    fake.faults.graph_unavailable_rate = 1.0

    response = client.post(
        "/v1.0/$batch",
        json={"requests": [{"id": "1", "method": "GET", "url": "/users/jim@contoso.com"}]},
        headers=bearer("connector"),
    )

    assert [a["status"] for a in response.json()["responses"]] == [503]


def _statuses(client: httpx.Client, headers: dict[str, str]) -> list[int]:
    return [client.get("/v1.0/users/jim@contoso.com", headers=headers).status_code for _ in range(12)]


def test_fault_selection_is_deterministic_for_a_seed(client: httpx.Client, bearer: Bearer) -> None:
    client.put("/_simulator/faults", json={"graph_throttle_rate": 0.5, "seed": 7}).raise_for_status()
    first = _statuses(client, bearer("connector"))
    client.put("/_simulator/faults", json={"seed": 7}).raise_for_status()  # restarts the sequence
    second = _statuses(client, bearer("connector"))
    client.put("/_simulator/faults", json={"seed": 8}).raise_for_status()
    other = _statuses(client, bearer("connector"))

    assert first == second
    assert set(first) == {200, 429}
    assert other != first


def test_token_throttling_is_429_with_integer_retry_after(client: httpx.Client, fake: FakeMicrosoft) -> None:
    fake.faults.token_throttle_rate = 1.0

    response = client.post(f"/{CONTOSO}/oauth2/v2.0/token", data=token_form("connector"))

    assert (response.status_code, response.headers["retry-after"]) == (429, "1")
    assert response.text == "Too Many Requests"


def test_token_unavailable_is_503_temporarily_unavailable(client: httpx.Client, fake: FakeMicrosoft) -> None:
    fake.faults.token_unavailable_rate = 1.0

    response = client.post(f"/{CONTOSO}/oauth2/v2.0/token", data=token_form("connector"))

    assert (response.status_code, response.json()["error"]) == (503, "temporarily_unavailable")
    assert response.json()["error_codes"] == [50033]


def test_latency_is_added_to_requests(client: httpx.Client, bearer: Bearer, fake: FakeMicrosoft) -> None:
    headers = bearer("connector")
    fake.faults.latency_ms = 150

    started = time.monotonic()
    client.get("/v1.0/users/jim@contoso.com", headers=headers)

    assert time.monotonic() - started >= 0.14  # a lower bound only: the sleep is at least this long


def test_admin_endpoints_are_never_faulted(client: httpx.Client, fake: FakeMicrosoft) -> None:
    fake.faults.update({"graph_malformed_rate": 1.0, "graph_throttle_rate": 1.0, "token_throttle_rate": 1.0})

    response = client.get("/_simulator/stats")

    assert response.status_code == 200
    assert "throttled" in response.json()


def test_reset_drops_the_connection_mid_answer(
    client: httpx.Client, bearer: Bearer, fake: FakeMicrosoft
) -> None:
    fake.faults.graph_reset_rate = 1.0

    with pytest.raises(httpx.RemoteProtocolError):
        client.get("/v1.0/users", headers=bearer("connector"))

    fake.faults.graph_reset_rate = 0.0
    assert client.get("/v1.0/users", headers=bearer("connector")).status_code == 200
