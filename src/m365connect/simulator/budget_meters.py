"""The three counting rules behind the budgets, pure and clock-free (the caller passes `now`).

- TokenBucket: the identity and access service's rule ("a token bucket algorithm, which works by adding
  individual costs of requests"): units in use drain at limit/window per second; a request fits while the
  units in use plus its cost stay within the limit.
- SlidingWindow: "N requests in a 10 minute period" read strictly: no window of that length, wherever it
  starts, holds more than N admitted requests (a fixed window would let 2N through across its boundary).
- Concurrency: requests in flight per key, with the peak observed.

Refused requests consume nothing, so a caller that waits the returned time is admitted (unless others
took the room meanwhile). Microsoft says that requests made while throttled still accrue; the simulator
does not model that, so that a honoured Retry-After is enough (docs/simulator.md, Budgets).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from m365connect.simulator.budgets import Budgets, tenant_size

_EPSILON = 1e-9


@dataclass
class TokenBucket:
    """Units in use by one app in one tenant; they drain continuously."""

    used: float = 0.0
    at: float = 0.0

    def take(self, cost: int, now: float, *, limit: int, window: float) -> float:
        """Admit `cost` units and return 0, or return the seconds until they would fit (nothing taken)."""
        rate = limit / window
        self.used = max(0.0, self.used - max(0.0, now - self.at) * rate)
        self.at = now
        cost = min(cost, limit)  # a request can never be costlier than the whole budget
        excess = self.used + cost - limit
        if excess <= _EPSILON:
            self.used += cost
            return 0.0
        return excess / rate

    def fraction(self, limit: int, extra: int = 0) -> float:
        """Units in use (plus `extra`) as a fraction of the limit."""
        return (self.used + extra) / limit


@dataclass
class SlidingWindow:
    """Times of the admitted requests of the last `window` seconds."""

    times: deque[float] = field(default_factory=deque)

    def take(self, now: float, *, limit: int, window: float) -> float:
        """Admit one request and return 0, or return the seconds until one would be admitted."""
        while self.times and self.times[0] <= now - window:
            self.times.popleft()
        if len(self.times) < limit:
            self.times.append(now)
            return 0.0
        # After the oldest len-limit+1 admitted requests leave the window, one more fits.
        return self.times[len(self.times) - limit] + window - now


@dataclass
class Concurrency:
    """Requests in flight per key and the highest count seen on any key."""

    in_flight: dict[tuple[str, ...], int] = field(default_factory=dict)
    peak: int = 0

    def acquire(self, key: tuple[str, ...], wanted: int, limit: int) -> int:
        """Take up to `wanted` slots of `key` (at most what the limit leaves free); return how many."""
        current = self.in_flight.get(key, 0)
        granted = max(0, min(wanted, limit - current))
        if granted:
            self.in_flight[key] = current + granted
            self.peak = max(self.peak, current + granted)
        return granted

    def release(self, key: tuple[str, ...], count: int) -> None:
        """Give back `count` slots of `key`."""
        left = self.in_flight.get(key, 0) - count
        if left > 0:
            self.in_flight[key] = left
        else:
            self.in_flight.pop(key, None)

    def total(self) -> int:
        """Requests in flight on every key together."""
        return sum(self.in_flight.values())


def _budget_counters() -> dict[str, int]:
    return {"directory": 0, "outlook_requests": 0, "outlook_concurrency": 0, "token": 0}


class BudgetMeter:
    """The live meters of every budget, keyed as Microsoft keys them, with the counters a benchmark reads."""

    def __init__(self, budgets: Budgets, clock: Callable[[], float]) -> None:
        self.budgets = budgets
        self.clock = clock
        self.concurrency = Concurrency()
        self._buckets: dict[tuple[str, str], TokenBucket] = {}
        self._outlook: dict[tuple[str, str], SlidingWindow] = {}
        self._tokens: dict[tuple[str, str], SlidingWindow] = {}
        self.throttled = _budget_counters()
        self.admitted = {"directory": 0, "outlook": 0, "token": 0}
        self.resource_units: dict[str, int] = {}
        # Called once per 429 a budget causes (the simulator's overall `throttled` counter).
        self.on_throttle: Callable[[], None] = lambda: None

    def refuse(self, budget: str, count: int = 1) -> None:
        """Count `count` 429s caused by `budget`."""
        self.throttled[budget] += count
        for _ in range(count):
            self.on_throttle()

    def directory(self, *, app_id: str, tenant_id: str, users: int, cost: int) -> tuple[float, float]:
        """Charge `cost` resource units to the app in the tenant: (seconds to wait or 0, fraction used)."""
        limit = self.budgets.directory_units(tenant_size(users))
        bucket = self._buckets.setdefault((app_id, tenant_id), TokenBucket(at=self.clock()))
        wait = bucket.take(cost, self.clock(), limit=limit, window=self.budgets.directory_window_seconds)
        if wait:
            self.refuse("directory")
            return wait, bucket.fraction(limit, cost)
        self.admitted["directory"] += 1
        self.resource_units[tenant_id] = self.resource_units.get(tenant_id, 0) + cost
        return 0.0, bucket.fraction(limit)

    def outlook(self, *, app_id: str, mailbox: str) -> float:
        """Count one Outlook request of the app on the mailbox: 0, or the seconds to wait."""
        window = self._outlook.setdefault((app_id, mailbox), SlidingWindow())
        limit, seconds = self.budgets.outlook_requests, self.budgets.outlook_window_seconds
        wait = window.take(self.clock(), limit=limit, window=seconds)
        if wait:
            self.refuse("outlook_requests")
        else:
            self.admitted["outlook"] += 1
        return wait

    def token(self, *, tenant: str, client_id: str) -> float:
        """Count one token request of the app in the tenant: 0, or the seconds to wait."""
        window = self._tokens.setdefault((tenant.lower(), client_id.lower()), SlidingWindow())
        limit, seconds = self.budgets.token_requests, self.budgets.token_window_seconds
        wait = window.take(self.clock(), limit=limit, window=seconds)
        if wait:
            self.refuse("token")
        else:
            self.admitted["token"] += 1
        return wait

    def acquire(self, key: tuple[str, ...], wanted: int) -> int:
        """Take up to `wanted` Outlook concurrency slots of `key` (as many as the limit leaves free)."""
        return self.concurrency.acquire(key, wanted, self.budgets.outlook_concurrency)

    def reset(self) -> None:
        """Forget every meter and counter (requests in flight keep their slots until they finish)."""
        self._buckets.clear()
        self._outlook.clear()
        self._tokens.clear()
        self.throttled = _budget_counters()
        self.admitted = {"directory": 0, "outlook": 0, "token": 0}
        self.resource_units = {}
        self.concurrency.peak = max(self.concurrency.in_flight.values(), default=0)

    def snapshot(self) -> dict[str, Any]:
        """The counters, JSON-ready."""
        return {
            "enabled": self.budgets.enabled,
            "throttled": dict(self.throttled),
            "admitted": dict(self.admitted),
            "resource_units": dict(sorted(self.resource_units.items())),
            "outlook_peak_concurrency": self.concurrency.peak,
            "outlook_in_flight": self.concurrency.total(),
        }
