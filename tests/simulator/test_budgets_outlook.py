"""The Outlook budget: requests per app and mailbox in a sliding 10 minutes, concurrent requests per app
(or per app and mailbox), and both inside $batch."""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from m365connect.simulator import FakeMicrosoft
from m365connect.simulator.state import SimulatorState

from .budgeted import SMALL, ManualClock

Bearer = Callable[..., dict[str, str]]
LATENCY_MS = 1_000  # how long each call holds its slot: time enough for the test to add more calls


def _settings(mailbox: int) -> str:
    return f"/v1.0/users/{SMALL.mailbox(mailbox)}/mailboxSettings"


def _throttled(response: httpx.Response, limit: str) -> bool:
    error = response.json()["error"]
    expected = ("ApplicationThrottled", f"Application is over its {limit} limit.")
    return response.status_code == 429 and (error["code"], error["message"]) == expected


def test_outlook_requests_per_mailbox_in_a_sliding_window(
    budgeted: FakeMicrosoft, budget_client: httpx.Client, budget_bearer: Bearer, clock: ManualClock
) -> None:
    budgeted.budgets.update({"enabled": True, "outlook_requests": 3})
    headers = budget_bearer(SMALL)

    assert budget_client.get(_settings(1), headers=headers).status_code == 200  # t = 0
    clock.advance(300)
    assert [budget_client.get(_settings(1), headers=headers).status_code for _ in range(2)] == [200, 200]
    refused = budget_client.get(_settings(1), headers=headers)
    assert _throttled(refused, "MailboxRequestRate")
    assert refused.headers["Retry-After"] == "300"  # the request of t = 0 leaves the window at t = 600
    assert budget_client.get(_settings(2), headers=headers).status_code == 200  # another mailbox
    assert budget_client.get(_settings(1), headers=budget_bearer(SMALL, 1)).status_code == 200  # another app
    clock.advance(299)
    assert budget_client.get(_settings(1), headers=headers).headers["Retry-After"] == "1"
    clock.advance(1)
    assert budget_client.get(_settings(1), headers=headers).status_code == 200
    # Sliding, not fixed: the two requests of t = 300 still count until t = 900.
    assert budget_client.get(_settings(1), headers=headers).headers["Retry-After"] == "300"
    assert budgeted.budget_meter.snapshot()["throttled"]["outlook_requests"] == 3


def test_outlook_request_rate_inside_a_batch_is_per_item(
    budgeted: FakeMicrosoft, budget_client: httpx.Client, budget_bearer: Bearer
) -> None:
    budgeted.budgets.update({"enabled": True, "outlook_requests": 2})
    items = [
        {"id": str(i), "method": "GET", "url": f"/users/{SMALL.mailbox(1)}/mailboxSettings"} for i in range(4)
    ]

    response = budget_client.post("/v1.0/$batch", json={"requests": items}, headers=budget_bearer(SMALL))

    assert response.status_code == 200
    answers = sorted(response.json()["responses"], key=lambda answer: answer["id"])
    assert [answer["status"] for answer in answers] == [200, 200, 429, 429]
    assert answers[2]["body"]["error"]["code"] == "ApplicationThrottled"
    assert answers[2]["headers"]["Retry-After"] == "600"


@pytest.fixture
def pool(budgeted: FakeMicrosoft) -> Iterator[Callable[[str, str, Any], Future[httpx.Response]]]:
    """Requests sent from threads, each on a client (and connection) of its own, with latency on."""
    budgeted.faults.latency_ms = LATENCY_MS
    tls = ssl.create_default_context(cafile=str(budgeted.ca_path))
    clients: list[httpx.Client] = []

    def send(method: str, url: str, kwargs: Any) -> httpx.Response:
        client = httpx.Client(base_url=budgeted.base_url, verify=tls, timeout=30)
        clients.append(client)
        return client.request(method, url, **kwargs)

    with ThreadPoolExecutor(max_workers=12) as executor:
        yield lambda method, url, kwargs: executor.submit(send, method, url, kwargs)
    for client in clients:
        client.close()


def _in_flight(budgeted: FakeMicrosoft, count: int) -> None:
    """Poll the meter until `count` Outlook calls hold a slot (they hold it for LATENCY_MS)."""
    deadline = time.monotonic() + 10
    while budgeted.budget_meter.snapshot()["outlook_in_flight"] < count:
        assert time.monotonic() < deadline, "the calls never ran concurrently"
        time.sleep(0.005)


@pytest.mark.parametrize("round_", range(2))
def test_a_fifth_concurrent_call_of_an_app_is_refused_whatever_the_mailbox(
    budgeted: FakeMicrosoft, budget_bearer: Bearer, pool: Any, round_: int
) -> None:
    budgeted.budgets.enabled = True
    headers = {"headers": budget_bearer(SMALL)}
    holders = [pool("GET", _settings(i), headers) for i in range(4)]
    _in_flight(budgeted, 4)

    extra = [pool("GET", _settings(10 + i), headers) for i in range(2)]
    other_app = pool("GET", _settings(0), {"headers": budget_bearer(SMALL, 1)})

    assert [holder.result().status_code for holder in holders] == [200] * 4
    refused = [future.result() for future in extra]
    assert all(_throttled(response, "MailboxConcurrency") for response in refused), round_
    assert [response.headers["Retry-After"] for response in refused] == ["1", "1"]
    assert other_app.result().status_code == 200  # the limit is per app
    snapshot = budgeted.budget_meter.snapshot()
    assert (snapshot["outlook_peak_concurrency"], snapshot["outlook_in_flight"]) == (4, 0)
    assert snapshot["throttled"]["outlook_concurrency"] == 2
    budgeted.faults.latency_ms = 0
    retried = pool("GET", _settings(10), headers).result()  # the slots are free again: honoured, it passes
    assert retried.status_code == 200


def test_per_mailbox_scope_lets_four_calls_run_on_each_mailbox(
    budgeted: FakeMicrosoft, budget_bearer: Bearer, pool: Any
) -> None:
    budgeted.budgets.update({"enabled": True, "outlook_concurrency_scope": "mailbox"})
    headers = {"headers": budget_bearer(SMALL)}
    spread = [pool("GET", _settings(i), headers) for i in range(6)]
    _in_flight(budgeted, 6)
    same = [pool("GET", _settings(20), headers) for _ in range(4)]
    _in_flight(budgeted, 10)
    fifth = pool("GET", _settings(20), headers)

    assert [future.result().status_code for future in spread + same] == [200] * 10
    assert _throttled(fifth.result(), "MailboxConcurrency")
    assert budgeted.budget_meter.snapshot()["outlook_peak_concurrency"] == 4


def _batch(mailboxes: range, *, chained: bool) -> dict[str, Any]:
    items: list[dict[str, Any]] = []
    for n, mailbox in enumerate(mailboxes):
        item: dict[str, Any] = {
            "id": str(n),
            "method": "GET",
            "url": f"/users/{SMALL.mailbox(mailbox)}/mailboxSettings",
        }
        if chained and n:
            item["dependsOn"] = [str(n - 1)]
        items.append(item)
    return {"requests": items}


@pytest.mark.parametrize(("chained", "statuses"), [(False, [200, 429, 429, 429]), (True, [200] * 4)])
def test_a_batch_runs_its_outlook_items_four_in_parallel_or_one_at_a_time_with_depends_on(
    budgeted: FakeMicrosoft, budget_bearer: Bearer, pool: Any, chained: bool, statuses: list[int]
) -> None:
    budgeted.budgets.enabled = True
    headers = budget_bearer(SMALL)
    holders = [pool("GET", _settings(i), {"headers": headers}) for i in range(3)]
    _in_flight(budgeted, 3)  # one slot left

    batch = pool("POST", "/v1.0/$batch", {"headers": headers, "json": _batch(range(10, 14), chained=chained)})

    answers = sorted(batch.result().json()["responses"], key=lambda answer: answer["id"])
    assert [answer["status"] for answer in answers] == statuses
    assert all(
        answer["body"]["error"]["code"] == "ApplicationThrottled"
        for answer in answers
        if answer["status"] == 429
    )
    assert [holder.result().status_code for holder in holders] == [200] * 3


def test_a_batch_alone_holds_four_slots_while_it_runs(
    budgeted: FakeMicrosoft, budget_client: httpx.Client, budget_bearer: Bearer
) -> None:
    budgeted.budgets.enabled = True

    response = budget_client.post(
        "/v1.0/$batch", json=_batch(range(20), chained=False), headers=budget_bearer(SMALL)
    )

    assert [answer["status"] for answer in response.json()["responses"]] == [200] * 20
    assert budgeted.budget_meter.snapshot()["outlook_peak_concurrency"] == 4


def test_a_send_refused_by_the_budget_sends_nothing(
    budgeted: FakeMicrosoft, budget_client: httpx.Client, budget_bearer: Bearer
) -> None:
    budgeted.budgets.update({"enabled": True, "outlook_requests": 1})
    message = {"message": {"subject": "hi", "toRecipients": [{"emailAddress": {"address": "a@b.example"}}]}}
    url = f"/v1.0/users/{SMALL.mailbox(3)}/sendMail"
    budgeted.sent_mail.clear()

    statuses = [
        budget_client.post(url, json=message, headers=budget_bearer(SMALL)).status_code for _ in range(2)
    ]

    assert statuses == [202, 429]
    assert len(budgeted.sent_mail) == 1
    budgeted.sent_mail.clear()


@pytest.fixture
def latencies(monkeypatch: pytest.MonkeyPatch) -> list[None]:
    """One entry per injected latency the simulator sleeps (counted, not slept: the tests judge how many)."""
    slept: list[None] = []

    async def count(_state: SimulatorState) -> None:
        slept.append(None)

    monkeypatch.setattr(SimulatorState, "injected_latency", count)
    return slept


@pytest.mark.parametrize("scope", ["app", "mailbox"])
@pytest.mark.parametrize(
    ("budgets", "items", "chained", "rounds"),
    [(True, 20, False, 5), (True, 6, True, 6), (False, 20, False, 1), (False, 6, True, 1)],
)
def test_a_batch_lasts_one_latency_per_outlook_item_of_its_longest_lane_with_the_budgets_on(
    budgeted: FakeMicrosoft,
    budget_client: httpx.Client,
    budget_bearer: Bearer,
    latencies: list[None],
    budgets: bool,
    items: int,
    chained: bool,
    rounds: int,
    scope: str,
) -> None:
    # 4 lanes of 5 items each (or one lane of 6 chained ones): Microsoft's 4 in parallel per batch means
    # an app's 20 mailbox calls take 5 call times, the floor's 4 / latency calls a second per app. With
    # the budgets off a batch lasts one latency, as before. "Irrespective of the target mailbox": the
    # same under the per-mailbox reading of the concurrency limit, where 20 mailboxes each need one slot.
    budgeted.budgets.update({"enabled": budgets, "outlook_concurrency_scope": scope})

    response = budget_client.post(
        "/v1.0/$batch", json=_batch(range(items), chained=chained), headers=budget_bearer(SMALL)
    )

    assert [answer["status"] for answer in response.json()["responses"]] == [200] * items
    assert len(latencies) == rounds
