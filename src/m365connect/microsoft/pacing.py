"""Pacing Graph calls to Microsoft's published budgets before they are sent (docs/graph-client.md, "Pacing").

GraphClient asks a `Pacer` for room before each HTTP request (a call, or one `$batch` envelope) and
tells it what Microsoft answered. This module only says what a request costs; where the budgets are kept
(the database, shared by every process) is m365connect.pacing. Without a pacer nothing is paced and the
client only reacts to 429s, as before.

What a request draws on mirrors Microsoft's throttling page (and the simulator, simulator/graph_budgets.py):
- `/users` and `/users/{key}`: the identity budget, in resource units per app and tenant: `GET users` 2,
  any other identity path 1; `$select` -1, `$expand` +1, `$top` under 20 -1; never below 1.
- `/users/{key}/mailboxSettings`, `sendMail`, messages, ...: Outlook, which limits the calls in flight per
  app (or per app and mailbox); a `$batch` runs up to 4 of its Outlook items in parallel, so an envelope
  of k Outlook items needs min(4, k) slots while it is in flight. How many slots a budget has is learnt:
  it starts at the stricter reading (4 per app) and probes above it (pacing/store.py).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from m365connect.microsoft.graph_types import GraphRequest
from m365connect.microsoft.graph_types import Kind as Kind  # re-exported: the pacer names budgets by it

KINDS: tuple[Kind, ...] = ("directory", "outlook")
# "by default, the service executes up to 4 requests in parallel at any point" (throttling-limits.md)
BATCH_OUTLOOK_PARALLELISM = 4
# Microsoft sends x-ms-throttle-limit-percentage "above 0.8 of the limit"
PRESSURE_HEADER = "x-ms-throttle-limit-percentage"


@dataclass(frozen=True)
class PaceScope:
    """Whose budget a call spends: the app (client id) in a tenant; interactive callers go first."""

    app_id: str
    tenant_id: str
    interactive: bool = False


@dataclass(frozen=True)
class Demand:
    """What one HTTP request to Graph needs: directory resource units and Outlook slots."""

    units: int = 0
    outlook: int = 0  # Outlook calls in flight at once while the request runs

    @property
    def empty(self) -> bool:
        """Nothing that a budget meters."""
        return self.units == 0 and self.outlook == 0


@dataclass(eq=False)
class Flight:
    """When a permit's request was at Microsoft, as this process saw it on the wire (time.monotonic):
    `sent` when its headers began to go out, after any wait for a connection; `answered` when the headers
    of its answer were in; None until then (a resend starts both again). Holding slots is not being at
    Microsoft: a request may wait for a connection with its slots held, and its answer may wait for the
    event loop. A probe is judged on these times (pacing/pacer.py)."""

    sent: float | None = None
    answered: float | None = None
    clean: bool | None = None  # answered without pushback (told at release; None before)
    judged: bool = False  # a probe's outcome is counted (pacing/pacer.py)

    async def trace(self, event: str, info: Mapping[str, Any]) -> None:  # noqa: ARG002 (httpcore's signature)
        """httpcore's `trace` request extension: called at each step of the request."""
        if event.endswith(".send_request_headers.started"):
            self.sent, self.answered = time.monotonic(), None
        elif event.endswith(".receive_response_headers.complete"):
            self.answered = time.monotonic()

    def outlasted(self, other: Flight) -> bool:
        """Sent before `other` and not answered before the middle of `other`'s flight (nor yet): at
        Microsoft when `other` got there, as long as the network's share of `other`'s time (there and
        back) is under half, whichever order the two answers took to come in over their connections."""
        if self.sent is None or other.sent is None or other.answered is None:
            return False
        middle = other.sent + (other.answered - other.sent) / 2
        return self.sent < other.sent and (self.answered is None or self.answered > middle)

    def overlaps(self, other: Flight) -> bool:
        """Both sent, and each sent before the other was answered (or while it is not): at some moment
        both were at Microsoft, or may have been."""
        if self.sent is None or other.sent is None:
            return False
        return (other.answered is None or self.sent < other.answered) and (
            self.answered is None or other.sent < self.answered
        )


@dataclass(frozen=True)
class Permit:
    """Room granted for one request; handed back to `Pacer.release` once its answer is in."""

    scope: PaceScope
    demand: Demand
    lease: str | None = None  # the Outlook slots' holder, None when none are held
    slots: tuple[int, ...] = ()  # the Outlook slots held
    probe: bool = False  # a slot above the budget's limit: the answer decides whether the limit grows
    top: int = -1  # the highest slot held
    limit: int = 0  # the budget's Outlook limit when the slots were taken
    flight: Flight = field(default_factory=Flight, compare=False)  # its request on the wire (graph.py)

    @property
    def beneath(self) -> int:
        """The slots held under the limit (a probe's others are at or above it)."""
        return sum(1 for slot in self.slots if slot < self.limit)

    @property
    def calls(self) -> int:
        """The Outlook calls its request runs at once at Microsoft (what it carries: `carried`)."""
        return carried(self, self.demand) or self.demand.outlook


class Pacer(Protocol):
    """Budgets shared by every process of the service (m365connect.pacing)."""

    async def acquire(self, scope: PaceScope, demand: Demand, *, deadline: float) -> Permit | None:
        """Wait until the scope's budgets admit `demand`; None when they do not before `deadline`
        (time.monotonic). A pacer that cannot reach its store admits at once (the 429 path remains)."""
        ...

    def probe_beside(self, permit: Permit) -> bool:
        """A probe of the same budget was at Microsoft while the permit's request was (its 429 may be
        Microsoft refusing that probe's call in its place)."""
        ...

    async def release(self, permit: Permit, *, proven: bool = False) -> None:
        """The request is answered: free the Outlook slots it held. `proven`: Microsoft answered it without
        pushback (no 429, no throttle percentage), so a probe above the Outlook limit raises the limit."""
        ...

    async def pushback(
        self,
        scope: PaceScope,
        kind: Kind,
        *,
        retry_after: float | None,
        pressure: float | None,
        throttled: int = 0,
        sent_under: int = 0,
        probe: bool = False,
    ) -> None:
        """Microsoft pushed back on `kind`: `throttled` items answered 429, the longest `retry_after`
        seconds (pause the scope for every process), and the highest throttle-limit percentage
        `pressure` (slow down); `sent_under`: the Outlook limit the request was sent under (a 429 of
        a request sent before an earlier halving does not halve again); `probe`: the request was a probe
        above that limit, so a 429 refused only what was above it (the limit stays, it does not halve)."""
        ...


def classify(request: GraphRequest) -> tuple[Kind, int] | None:
    """The budget a request draws on and, for the directory, its cost in resource units (worked out
    once per request: graph_types.charge)."""
    return request.charge


def is_outlook(request: GraphRequest) -> bool:
    """Whether the request draws on the Outlook budget (a mailbox resource)."""
    found = classify(request)
    return found is not None and found[0] == "outlook"


def demand(requests: Sequence[GraphRequest], indexes: Sequence[int], *, batch: bool) -> Demand:
    """What sending these requests at once needs (one call, or one `$batch` envelope of them)."""
    units = outlook = 0
    for index in indexes:
        found = classify(requests[index])
        if found is None:
            continue
        kind, cost = found
        if kind == "directory":
            units += cost
        else:
            outlook += 1
    if batch:
        outlook = min(BATCH_OUTLOOK_PARALLELISM, outlook)
    return Demand(units=units, outlook=outlook)


def carried(permit: Permit, need: Demand) -> int | None:
    """How many Outlook items a group may carry within its permit; None: all of them. A `$batch` runs
    min(4, k) of its k Outlook items at once, so a permit of fewer slots than that (the budget's limit is
    below 4) carries only as many items as it holds slots. A probe carries one item more than its slots
    under the limit: with the calls beneath it, one call above the limit, which is all a probe needs to
    prove, so that Microsoft refusing it costs one 429, not 4 or a whole envelope's."""
    if not permit.slots or need.outlook == 0:
        return None
    if permit.probe:
        return min(len(permit.slots), permit.beneath + 1)
    if len(permit.slots) < need.outlook:
        return len(permit.slots)
    return None


def split(
    requests: Sequence[GraphRequest], indexes: Sequence[int], outlook: int
) -> tuple[list[int], list[int]]:
    """A group cut to `outlook` Outlook items: those and every other item, then the Outlook rest."""
    first: list[int] = []
    rest: list[int] = []
    seen = 0
    for index in indexes:
        if is_outlook(requests[index]):
            seen += 1
            if seen > outlook:
                rest.append(index)
                continue
        first.append(index)
    return first, rest


def pressure(headers: Mapping[str, str]) -> float | None:
    """The x-ms-throttle-limit-percentage of an answer (lowercase header names); None when absent."""
    raw = headers.get(PRESSURE_HEADER)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if 0.0 <= value < 100.0 else None
