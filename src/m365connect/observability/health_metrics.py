"""Metrics of background verification: checks run by kind and outcome (this process), and the states of
every connected mailbox and credential (all processes, read from the database on each scrape)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge

CheckKind = Literal["credential", "mailbox"]
# ok: Microsoft said it works; failing: a definitive refusal or failure; transient: no answer (throttled,
# 5xx, timeout), which changes no state and is retried.
CheckOutcome = Literal["ok", "failing", "transient"]
OUTCOMES: tuple[CheckOutcome, ...] = ("ok", "failing", "transient")
# The states each kind can be in (a state with no object reads 0, so its series always exists).
STATES = {"mailbox": ("OK", "FAILING"), "credential": ("VALID", "EXPIRED", "INVALID")}


class StateCount(Protocol):
    """How many objects of a kind are in a state (m365connect.health.repository.StateCount)."""

    @property
    def kind(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def count(self) -> int: ...


class HealthMetrics:
    """Checks run by kind and outcome; connected mailboxes by health and credentials by status."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.checks = Counter(
            "m365connect_health_checks",
            "Health checks run in this process (background and verify now), by kind (credential, mailbox: "
            "one per mailbox checked) and outcome (ok, failing, transient)",
            ["kind", "outcome"],
            registry=registry,
        )
        self.states = Gauge(
            "m365connect_health_states",
            "Objects by kind and state (all processes): ACTIVE mailboxes OK or FAILING, credentials VALID, "
            "EXPIRED or INVALID",
            ["kind", "state"],
            registry=registry,
        )
        for kind, states in STATES.items():
            for outcome in OUTCOMES:
                self.checks.labels(kind, outcome)
            for state in states:
                self.states.labels(kind, state)

    def checked(self, kind: CheckKind, outcome: CheckOutcome, count: int = 1) -> None:
        """`count` checks of `kind` ended with `outcome`."""
        if count:
            self.checks.labels(kind, outcome).inc(count)

    def observe_states(self, counts: Iterable[StateCount]) -> None:
        """Set the state gauges from a fresh reading; a state not in it reads 0."""
        seen = {(row.kind, row.state): row.count for row in counts}
        for kind, states in STATES.items():
            for state in states:
                self.states.labels(kind, state).set(seen.pop((kind, state), 0))
        for (kind, state), count in seen.items():  # a state this code does not know yet: shown as it is
            self.states.labels(kind, state).set(count)
