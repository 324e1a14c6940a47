"""Graph calls against the budgets: which budget a call draws on, its cost, the headers and the 429s.

Directory reads (`/users`, `/users/{key}`) cost resource units per Microsoft's table: `GET users` 2, any
other identity path 1; `$select` -1, `$expand` +1, `$top` under 20 -1; never below 1. Answers carry
`x-ms-resource-unit` (the cost) and, above 0.8 of the limit, `x-ms-throttle-limit-percentage`; past the
limit 429 `TooManyRequests` with `Retry-After` (whole seconds until the units free up), `x-ms-throttle-scope`
and `x-ms-throttle-information: ResourceUnitLimitExceeded`. Outlook calls (`/users/{key}/mailboxSettings`,
`sendMail`, other mailbox resources) count against the app and mailbox and hold a concurrency slot while
they run; past either, 429 `ApplicationThrottled` with `Retry-After`.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

from m365connect.simulator.budget_meters import BudgetMeter
from m365connect.simulator.graph_core import GraphError, GraphRequest, resource_segments, too_many_requests

# Navigations under a user that Exchange serves (the simulator answers the first two; the others are 400
# there, but a client calling them still spends its Outlook budget).
OUTLOOK_NAVIGATIONS = frozenset(
    {
        "mailboxsettings",
        "sendmail",
        "messages",
        "mailfolders",
        "events",
        "calendar",
        "calendars",
        "contacts",
        "contactfolders",
        "outlook",
        "inferenceclassification",
    }
)
_SMALL_TOP = 20


@dataclass(frozen=True)
class Charge:
    """The budget a call draws on: 'directory' with a cost in resource units, or 'outlook' on a mailbox."""

    budget: str
    cost: int = 1
    mailbox: str = ""


def _directory_cost(request: GraphRequest, *, listing: bool) -> int:
    names = {name.lower(): value for name, value in request.query}
    cost = 2 if listing and request.method == "GET" else 1
    cost -= "$select" in names
    cost += "$expand" in names
    top = names.get("$top", "").strip()
    cost -= top.isdigit() and int(top) < _SMALL_TOP
    return max(1, cost)


def classify(request: GraphRequest) -> Charge | None:
    """Which budget the call draws on (None: none that the simulator meters)."""
    segments = resource_segments(request.path)
    if segments[0].lower() != "users":
        return None
    if len(segments) <= 2:
        return Charge("directory", _directory_cost(request, listing=len(segments) == 1))
    if segments[2].lower() not in OUTLOOK_NAVIGATIONS:
        return None
    user = request.caller.tenant.user(segments[1])
    return Charge("outlook", mailbox=user.id if user is not None else segments[1].lower())


def _seconds(wait: float) -> str:
    """Retry-After in whole seconds, rounded up, at least 1: honouring it is always enough."""
    return str(max(1, math.ceil(wait - 1e-9)))


def _percentage(fraction: float) -> str:
    return f"{min(fraction, 1.8):.2f}"


def application_throttled(limit: str, retry_after: str) -> GraphError:
    """Exchange's 429, as clients report it: ApplicationThrottled, "Application is over its ... limit."."""
    message = f"Application is over its {limit} limit."
    return GraphError(429, "ApplicationThrottled", message, headers={"Retry-After": retry_after})


def charge(meter: BudgetMeter, request: GraphRequest) -> dict[str, str]:
    """Charge the call to its budget: the headers its answer carries, or GraphError 429 past the budget."""
    found = classify(request) if meter.budgets.enabled else None
    if found is None:
        return {}
    caller = request.caller
    if found.budget == "outlook":
        wait = meter.outlook(app_id=caller.app_id, mailbox=found.mailbox)
        if wait:
            raise application_throttled("MailboxRequestRate", _seconds(wait))
        return {}
    tenant = caller.tenant
    wait, fraction = meter.directory(
        app_id=caller.app_id, tenant_id=tenant.id, users=len(tenant.users), cost=found.cost
    )
    headers = {"x-ms-resource-unit": str(found.cost)}
    if fraction > 0.8:
        headers["x-ms-throttle-limit-percentage"] = _percentage(fraction)
    if wait:
        error = too_many_requests(_seconds(wait))
        error.headers.update(headers)
        error.headers["x-ms-throttle-scope"] = f"Tenant_Application/ReadWrite/{caller.app_id}/{tenant.id}"
        error.headers["x-ms-throttle-information"] = "ResourceUnitLimitExceeded"
        raise error
    return headers


def concurrency_key(meter: BudgetMeter, request: GraphRequest) -> tuple[str, ...] | None:
    """The concurrency slot an Outlook call needs (None for other calls, or with budgets off)."""
    found = classify(request) if meter.budgets.enabled else None
    if found is None or found.budget != "outlook":
        return None
    if meter.budgets.outlook_concurrency_scope == "app":
        return ("app", request.caller.app_id)
    return ("mailbox", request.caller.app_id, found.mailbox)


def concurrency_refused(meter: BudgetMeter) -> GraphError:
    """The 429 of an Outlook call that found every slot taken (counted here: it is being served)."""
    meter.refuse("outlook_concurrency")
    return application_throttled("MailboxConcurrency", str(meter.budgets.outlook_concurrency_retry_after))


@asynccontextmanager
async def outlook_slot(meter: BudgetMeter, request: GraphRequest) -> AsyncIterator[None]:
    """Hold one concurrency slot for an Outlook call while it runs; 429 if none is free."""
    key = concurrency_key(meter, request)
    if key is None:
        yield
        return
    if not meter.acquire(key, 1):
        raise concurrency_refused(meter)
    try:
        yield
    finally:
        meter.concurrency.release(key, 1)


@dataclass(frozen=True)
class Lanes:
    """How a batch's Outlook items run: the indexes refused (429), and the rounds its longest lane takes
    (each Outlook item of a lane runs after the one before it, so a lane of 5 items runs 5 latencies)."""

    refused: set[int]
    rounds: int


@asynccontextmanager
async def batch_lanes(
    meter: BudgetMeter, items: Sequence[GraphRequest], depends: Sequence[bool]
) -> AsyncIterator[Lanes]:
    """Hold the slots of a batch's Outlook items for the batch's run; yield the lanes (refused, rounds).

    Graph runs a batch's Outlook items "up to 4 requests in parallel at any point, irrespective of the
    target mailbox", or one at a time when they are chained by dependsOn. The items are dealt round-robin
    to that many lanes, whatever their mailboxes: a batch of 20 Outlook items runs 5 rounds under either
    reading of the concurrency limit. A key's items need as many of its slots as lanes they run in; the
    items of a key beyond the slots it got are refused. The admitted items run one after another in their
    lanes: the batch lasts as many latencies as its longest lane has admitted items, and holds its slots
    that long.
    """
    keyed = [(i, key) for i, item in enumerate(items) if (key := concurrency_key(meter, item)) is not None]
    independent = sum(1 for i, _ in keyed if not depends[i])
    width = min(meter.budgets.batch_outlook_parallelism, max(1, independent))
    rank: dict[int, int] = {}  # an item's place among its key's items, dealt to that key's slots
    per_key: Counter[tuple[str, ...]] = Counter()
    for i, key in keyed:
        rank[i] = per_key[key] % width
        per_key[key] += 1
    granted = {key: meter.acquire(key, min(width, count)) for key, count in per_key.items()}
    refused = {i for i, key in keyed if rank[i] >= granted[key]}
    lanes = Counter(place % width for place, (i, _) in enumerate(keyed) if i not in refused)
    rounds = max(lanes.values(), default=1)
    try:
        yield Lanes(refused, rounds)
    finally:
        for key, count in granted.items():
            meter.concurrency.release(key, count)
