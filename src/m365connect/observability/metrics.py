"""The service's Prometheus metrics, on a registry of its own (one per app, never the global default).

Every label has a small, fixed set of values (route templates, not paths; status classes; codes), so a
client cannot grow the number of series. docs/operations.md lists each metric.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import generate_latest

from m365connect.deliverability.observer import LookupOutcome
from m365connect.errors import AppError
from m365connect.microsoft.graph_types import outcome_of
from m365connect.microsoft.observers import TokenOutcome, WaitReason
from m365connect.observability.health_metrics import HealthMetrics
from m365connect.observability.job_metrics import JobMetrics
from m365connect.observability.work_metrics import WorkMetrics

SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
BULK_SECONDS_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
BULK_SIZE_BUCKETS = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000)


def status_class(status: int) -> str:
    """`2xx`, `4xx`, `5xx`…; `none` for no usable answer (status 0)."""
    return f"{status // 100}xx" if status > 0 else "none"


class Metrics:
    """The collectors of one running service and the observers that feed them."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self.http_requests = Counter(
            "m365connect_http_requests",
            "HTTP requests answered, by route template, method and status",
            ["route", "method", "status"],
            registry=registry,
        )
        self.http_duration = Histogram(
            "m365connect_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template and method",
            ["route", "method"],
            buckets=SECONDS_BUCKETS,
            registry=registry,
        )
        self.graph = GraphMetrics(registry)
        self.pacing = PacingMetrics(registry)
        self.tokens = TokenMetrics(registry)
        self.dns = DnsMetrics(registry)
        self.bulk = BulkMetrics(registry)
        self.work = WorkMetrics(registry)
        self.webhooks = WebhookMetrics(registry)
        self.health = HealthMetrics(registry)
        self.jobs = JobMetrics(registry)

    def render(self) -> bytes:
        """The registry in Prometheus' text exposition format."""
        return generate_latest(self.registry)


class GraphMetrics:
    """Microsoft Graph answers and retry waits (a `GraphObserver`)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "m365connect_graph_requests",
            "Graph requests (calls and $batch items, every attempt) by outcome and HTTP status class",
            ["outcome", "status_class"],
            registry=registry,
        )
        self.waits = Counter(
            "m365connect_graph_retry_waits",
            "Waits before re-sending Graph requests; reason throttled when an item was answered 429",
            ["reason"],
            registry=registry,
        )
        self.wait_seconds = Counter(
            "m365connect_graph_retry_wait_seconds",
            "Seconds spent waiting before re-sending Graph requests",
            ["reason"],
            registry=registry,
        )
        for status in (200, 404, 429, 503, 0):
            self.answered_labels(status)
        for reason in ("throttled", "unavailable"):
            self.waits.labels(reason)
            self.wait_seconds.labels(reason)

    def answered_labels(self, status: int) -> Counter:
        """The child counter of one answer status."""
        return self.requests.labels(outcome_of(status).lower(), status_class(status))

    def answered(self, status: int) -> None:
        """Count one Graph answer."""
        self.answered_labels(status).inc()

    def waited(self, seconds: float, reason: WaitReason) -> None:
        """Count one retry wait and its length."""
        self.waits.labels(reason).inc()
        self.wait_seconds.labels(reason).inc(seconds)


class PacingMetrics:
    """Waits for room in Graph's budgets and Microsoft's pushback, by budget kind (a `PaceObserver`)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.waits = Histogram(
            "m365connect_graph_pacing_wait_seconds",
            "Time a Graph request (call or envelope) waited for room in a budget, by kind and priority",
            ["kind", "priority"],
            buckets=SECONDS_BUCKETS,
            registry=registry,
        )
        self.throttled = Counter(
            "m365connect_graph_pacing_throttled",
            "Graph requests answered 429 while paced, by budget kind",
            ["kind"],
            registry=registry,
        )
        self.pauses = Counter(
            "m365connect_graph_pacing_pauses",
            "Budgets paused for every process after a 429's Retry-After, by kind",
            ["kind"],
            registry=registry,
        )
        self.slowdowns = Counter(
            "m365connect_graph_pacing_slowdowns",
            "Directory budgets slowed after x-ms-throttle-limit-percentage passed the threshold",
            ["kind"],
            registry=registry,
        )
        self.probes = Counter(
            "m365connect_graph_pacing_outlook_probes",
            "Requests sent above an Outlook budget's limit, by outcome: raised (answered without pushback, "
            "the limit grew), unproven (answered without pushback, but the calls beneath it had ended "
            "before it was answered: no raise) or refused (throttled, or failed)",
            ["outcome"],
            registry=registry,
        )
        for outcome in ("raised", "unproven", "refused"):
            self.probes.labels(outcome)
        for kind in ("directory", "outlook"):
            for priority in ("interactive", "background"):
                self.waits.labels(kind, priority)
            self.throttled.labels(kind)
            self.pauses.labels(kind)
            self.slowdowns.labels(kind)

    def waited(self, kind: str, interactive: bool, seconds: float) -> None:
        """Record one wait for room (0 when admitted at once)."""
        self.waits.labels(kind, "interactive" if interactive else "background").observe(seconds)

    def pushed_back(self, kind: str, *, throttled: int, paused: bool, slowed: bool) -> None:
        """Record Microsoft's pushback on a paced request."""
        if throttled:
            self.throttled.labels(kind).inc(throttled)
        if paused:
            self.pauses.labels(kind).inc()
        if slowed:
            self.slowdowns.labels(kind).inc()

    def probed(self, outcome: str) -> None:
        """Record the outcome of one probe above an Outlook limit."""
        self.probes.labels(outcome).inc()


class TokenMetrics:
    """Requests to Microsoft's identity platform (a `TokenObserver`)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "m365connect_token_requests",
            "Token requests sent to the identity platform, by outcome (cache hits are not requests)",
            ["outcome"],
            registry=registry,
        )
        self.duration = Histogram(
            "m365connect_token_request_duration_seconds",
            "Time for one token request to the identity platform",
            buckets=SECONDS_BUCKETS,
            registry=registry,
        )
        for outcome in ("granted", "rejected", "unavailable"):
            self.requests.labels(outcome)

    def requested(self, outcome: TokenOutcome, seconds: float) -> None:
        """Count one token request."""
        self.requests.labels(outcome).inc()
        self.duration.observe(seconds)


class DnsMetrics:
    """DNS lookups of the deliverability checks (a `DnsObserver`)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.lookups = Counter(
            "m365connect_dns_lookups",
            "DNS lookups of the SPF/DKIM checks, by record type and outcome",
            ["type", "outcome"],
            registry=registry,
        )
        self.duration = Histogram(
            "m365connect_dns_lookup_duration_seconds",
            "Time for one DNS lookup (cache hits included)",
            buckets=SECONDS_BUCKETS,
            registry=registry,
        )
        for rdtype in ("TXT", "CNAME"):
            for outcome in ("answer", "nodata", "nxdomain", "error"):
                self.lookups.labels(rdtype, outcome)

    def looked_up(self, rdtype: str, outcome: LookupOutcome, seconds: float) -> None:
        """Count one lookup."""
        self.lookups.labels(rdtype, outcome).inc()
        self.duration.observe(seconds)


class BulkRecord:
    """Filled by a bulk request while it runs: its answer status and its per-mailbox results."""

    def __init__(self) -> None:
        # "error" stays when an exception that is not an AppError leaves (a bug, the database unreachable)
        self.status = "error"
        self.results: list[str] = []

    def answered(self, status: int, results: Iterable[str]) -> None:
        """The request answered `status`; `results` is "connected", "already_connected" or a code per item."""
        self.status = str(status)
        self.results = list(results)


class WebhookMetrics:
    """Webhook delivery attempts by outcome, and how long the receivers took."""

    OUTCOMES = ("delivered", "failed", "gone", "refused")

    def __init__(self, registry: CollectorRegistry) -> None:
        self.deliveries = Counter(
            "m365connect_webhook_deliveries",
            "Webhook delivery attempts by outcome (delivered = 2xx, gone = 410, refused = the URL broke the "
            "SSRF rules at delivery, failed = anything else)",
            ["outcome"],
            registry=registry,
        )
        self.duration = Histogram(
            "m365connect_webhook_delivery_duration_seconds",
            "Time per webhook delivery attempt that reached the network",
            buckets=SECONDS_BUCKETS,
            registry=registry,
        )
        for outcome in self.OUTCOMES:  # every series exists from the start (a rate() over zero is zero)
            self.deliveries.labels(outcome=outcome)

    def attempted(self, outcome: str, *, duration_ms: int | None) -> None:
        """Count one attempt (`outcome` one of OUTCOMES); time it when it reached the network."""
        self.deliveries.labels(outcome=outcome).inc()
        if duration_ms is not None:
            self.duration.observe(duration_ms / 1000)


class BulkMetrics:
    """Sizes, durations and per-mailbox results of bulk connection requests."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.size = Histogram(
            "m365connect_bulk_accounts",
            "Mailboxes submitted per bulk request",
            buckets=BULK_SIZE_BUCKETS,
            registry=registry,
        )
        self.duration = Histogram(
            "m365connect_bulk_duration_seconds",
            "Time to answer a bulk request, by HTTP status (`error`: an unexpected exception)",
            ["status"],
            buckets=BULK_SECONDS_BUCKETS,
            registry=registry,
        )
        self.mailboxes = Counter(
            "m365connect_bulk_mailboxes",
            "Mailboxes answered by bulk requests, by result (connected, already_connected or the error code)",
            ["result"],
            registry=registry,
        )

    @contextmanager
    def request(self, size: int) -> Iterator[BulkRecord]:
        """Time one bulk request of `size` mailboxes; an error leaving it counts with the error's status."""
        record = BulkRecord()
        started = time.perf_counter()
        try:
            yield record
        except AppError as exc:
            record.status = str(exc.status)
            raise
        finally:
            self.size.observe(size)
            self.duration.labels(record.status).observe(time.perf_counter() - started)
            for result in record.results:
                self.mailboxes.labels(result).inc()
