"""The counting rules behind the budgets, with time passed in: token bucket, sliding window, concurrency."""

from __future__ import annotations

import pytest

from m365connect.simulator import Budgets
from m365connect.simulator.budget_meters import BudgetMeter, Concurrency, SlidingWindow, TokenBucket
from m365connect.simulator.budgets import tenant_size

from .budgeted import ManualClock


@pytest.mark.parametrize(("users", "size"), [(0, "S"), (49, "S"), (50, "M"), (500, "M"), (501, "L")])
def test_tenant_sizes_follow_microsofts_user_counts(users: int, size: str) -> None:
    assert tenant_size(users) == size


@pytest.mark.parametrize(("users", "limit"), [(49, 3_500), (50, 5_000), (501, 8_000)])
def test_default_resource_units_per_10_seconds_by_size(users: int, limit: int) -> None:
    clock = ManualClock()
    meter = BudgetMeter(Budgets(enabled=True), clock)

    waits = [meter.directory(app_id="a", tenant_id="t", users=users, cost=1)[0] for _ in range(limit)]
    wait, fraction = meter.directory(app_id="a", tenant_id="t", users=users, cost=1)

    assert set(waits) == {0.0}
    assert wait == pytest.approx(10 / limit)  # one unit drains in window/limit seconds
    assert fraction > 1.0
    clock.advance(wait)
    assert meter.directory(app_id="a", tenant_id="t", users=users, cost=1)[0] == 0.0
    assert meter.resource_units == {"t": limit + 1}


def test_token_bucket_drains_continuously_and_refusals_take_nothing() -> None:
    bucket = TokenBucket(at=0.0)

    assert bucket.take(8, 0.0, limit=10, window=10.0) == 0.0
    assert bucket.take(3, 0.0, limit=10, window=10.0) == pytest.approx(1.0)
    assert bucket.take(3, 0.0, limit=10, window=10.0) == pytest.approx(1.0)  # the refusal took nothing
    assert bucket.take(3, 1.0, limit=10, window=10.0) == 0.0
    assert bucket.fraction(10) == pytest.approx(1.0)
    assert bucket.take(50, 11.0, limit=10, window=10.0) == 0.0  # capped at the whole budget


def test_sliding_window_frees_each_request_one_window_after_it() -> None:
    window = SlidingWindow()

    assert [window.take(t, limit=2, window=10.0) for t in (0.0, 4.0)] == [0.0, 0.0]
    assert window.take(5.0, limit=2, window=10.0) == pytest.approx(5.0)
    assert window.take(10.0, limit=2, window=10.0) == 0.0  # t = 0 has left
    assert window.take(10.0, limit=2, window=10.0) == pytest.approx(4.0)
    assert window.take(20.0, limit=1, window=10.0) == 0.0  # a lowered limit applies at once


def test_concurrency_grants_what_the_limit_leaves_and_keeps_the_peak() -> None:
    slots = Concurrency()

    assert slots.acquire(("app", "a"), 3, 4) == 3
    assert slots.acquire(("app", "a"), 4, 4) == 1
    assert slots.acquire(("app", "a"), 1, 4) == 0
    assert slots.acquire(("app", "b"), 1, 4) == 1
    slots.release(("app", "a"), 4)
    assert (slots.total(), slots.peak, slots.in_flight) == (1, 4, {("app", "b"): 1})
