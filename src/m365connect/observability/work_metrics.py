"""Metrics of the background work: runs by kind and outcome (this process), the queue (shared by all)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge


class QueueFigures(Protocol):
    """What the engine reports of one kind's queue (m365connect.work.repository.KindStats)."""

    @property
    def kind(self) -> str: ...
    @property
    def queued(self) -> int: ...
    @property
    def running(self) -> int: ...
    @property
    def failed(self) -> int: ...
    @property
    def oldest_due_seconds(self) -> float: ...


class WorkMetrics:
    """Job runs by kind and outcome; queue depth by kind and state; the wait of the oldest due job."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.runs = Counter(
            "m365connect_work_jobs",
            "Background job runs in this process, by kind and outcome (done, retried, failed); periodic "
            "tasks count under their name",
            ["kind", "outcome"],
            registry=registry,
        )
        self.depth = Gauge(
            "m365connect_work_queue_jobs",
            "Background jobs in the queue (all processes), by kind and state (queued, running, failed)",
            ["kind", "state"],
            registry=registry,
        )
        self.oldest_due = Gauge(
            "m365connect_work_oldest_due_seconds",
            "How long the oldest due, waiting job of a kind has waited (0: none waits)",
            ["kind"],
            registry=registry,
        )
        self._kinds: set[str] = set()

    def ran(self, kind: str, outcome: str) -> None:
        """One run of a job (or periodic task) ended with `outcome`."""
        self.runs.labels(kind, outcome).inc()

    def observe_queue(self, figures: Iterable[QueueFigures]) -> None:
        """Set the queue gauges from a fresh reading; a kind no longer seen reads 0."""
        seen = set()
        for row in figures:
            seen.add(row.kind)
            self.depth.labels(row.kind, "queued").set(row.queued)
            self.depth.labels(row.kind, "running").set(row.running)
            self.depth.labels(row.kind, "failed").set(row.failed)
            self.oldest_due.labels(row.kind).set(row.oldest_due_seconds)
        for kind in self._kinds - seen:
            for state in ("queued", "running", "failed"):
                self.depth.labels(kind, state).set(0)
            self.oldest_due.labels(kind).set(0)
        self._kinds |= seen
