"""Metrics of bulk jobs: jobs started and finished, items written by result, waves, sweeps and chunk run
times (this process, each counted once its transaction committed); unfinished jobs and their pending
items (all processes, read from the database on each scrape)."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from m365connect.codes import ITEM_CODES

CHUNK_SECONDS_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
STATUSES = ("DONE", "CANCELLED")
SWEEP_ACTIONS = ("requeued", "abandoned")


class JobMetrics:
    """A JobObserver (jobs/service.py) that counts into Prometheus collectors."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.started_jobs = Counter(
            "m365connect_bulk_jobs_started",
            "Bulk jobs started (a replayed Idempotency-Key is not a new job)",
            registry=registry,
        )
        self.finished_jobs = Counter(
            "m365connect_bulk_jobs_finished",
            "Bulk jobs finished, by status (DONE, CANCELLED)",
            ["status"],
            registry=registry,
        )
        self.items = Counter(
            "m365connect_bulk_job_items",
            "Bulk job items given their result, by result (connected, already_connected or the error code)",
            ["result"],
            registry=registry,
        )
        self.waves = Counter(
            "m365connect_bulk_job_waves",
            "Chunk runs that left items throttled or unanswered by Microsoft for a later wave",
            registry=registry,
        )
        self.sweeps = Counter(
            "m365connect_bulk_job_sweeps",
            "Stuck jobs acted on by the sweeper, by action (requeued: a chunk the engine gave up queued "
            "again; abandoned: its items failed JOB_ITEM_NOT_PROCESSED and the job finished)",
            ["action"],
            registry=registry,
        )
        self.chunk_duration = Histogram(
            "m365connect_bulk_job_chunk_duration_seconds",
            "Time of one run of one chunk (Microsoft's answers and the write), whatever its outcome",
            buckets=CHUNK_SECONDS_BUCKETS,
            registry=registry,
        )
        self.unfinished = Gauge(
            "m365connect_bulk_jobs_unfinished",
            "Bulk jobs QUEUED or RUNNING (all processes)",
            registry=registry,
        )
        self.pending = Gauge(
            "m365connect_bulk_job_items_pending",
            "Items of QUEUED or RUNNING bulk jobs without a result yet (all processes)",
            registry=registry,
        )
        for status in STATUSES:  # every series exists from the start (a rate() over zero is zero)
            self.finished_jobs.labels(status)
        for action in SWEEP_ACTIONS:
            self.sweeps.labels(action)
        for result in ("connected", "already_connected", *sorted(ITEM_CODES)):
            self.items.labels(result)

    def started(self) -> None:
        """A new job was stored."""
        self.started_jobs.inc()

    def finished(self, status: str) -> None:
        """A job ended DONE or CANCELLED."""
        self.finished_jobs.labels(status).inc()

    def written(self, results: Iterable[str]) -> None:
        """Items were given these results."""
        for result in results:
            self.items.labels(result).inc()

    def waved(self) -> None:
        """A chunk left items for a later wave."""
        self.waves.inc()

    def chunk_ran(self, seconds: float) -> None:
        """One run of one chunk took `seconds`."""
        self.chunk_duration.observe(seconds)

    def swept(self, action: str) -> None:
        """The sweeper acted on a stuck job."""
        self.sweeps.labels(action).inc()

    def observe_unfinished(self, jobs: int, pending: int) -> None:
        """Set the unfinished gauges from a fresh reading."""
        self.unfinished.set(jobs)
        self.pending.set(pending)
