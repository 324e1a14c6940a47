"""`GET /metrics` (Prometheus text format, no API key) and the dependency that hands routes the metrics."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4 as TEXT_FORMAT

from m365connect.observability.metrics import Metrics

router = APIRouter(tags=["Operations"])
logger = logging.getLogger("m365connect.metrics")

METRICS_EXAMPLE = (
    "# HELP m365connect_http_requests_total HTTP requests answered, by route template, method and status\n"
    "# TYPE m365connect_http_requests_total counter\n"
    'm365connect_http_requests_total{method="POST",route="/rest/v2/mailboxes/microsoft/bulk",'
    'status="207"} 3.0\n'
)


def _metrics(request: Request) -> Metrics:
    metrics = request.app.state.metrics
    assert isinstance(metrics, Metrics)
    return metrics


MetricsDep = Annotated[Metrics, Depends(_metrics)]


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {
            "description": "Prometheus text exposition format",
            "content": {TEXT_FORMAT: {"schema": {"type": "string"}, "example": METRICS_EXAMPLE}},
        }
    },
)
async def read_metrics(metrics: MetricsDep, request: Request) -> Response:
    """Prometheus metrics of this process, text format 0.0.4 (docs/operations.md lists them); no API key."""
    await _read_queue(metrics, request)
    await _read_health_states(metrics, request)
    await _read_jobs(metrics, request)
    return Response(metrics.render(), media_type=TEXT_FORMAT)


async def _read_queue(metrics: Metrics, request: Request) -> None:
    """Refresh the background queue's gauges; an unreachable database leaves the last reading (no 500)."""
    read = getattr(request.app.state, "queue_figures", None)
    if read is None:
        return
    try:
        figures = await read()
    except Exception as exc:
        logger.warning("metrics.queue_unreadable", extra={"error": type(exc).__name__})
        return
    metrics.work.observe_queue(figures)


async def _read_health_states(metrics: Metrics, request: Request) -> None:
    """Refresh the health state gauges (one grouped query); an unreachable database leaves the last
    reading (no 500)."""
    read = getattr(request.app.state, "health_figures", None)
    if read is None:
        return
    try:
        counts = await read()
    except Exception as exc:
        logger.warning("metrics.health_unreadable", extra={"error": type(exc).__name__})
        return
    metrics.health.observe_states(counts)


async def _read_jobs(metrics: Metrics, request: Request) -> None:
    """Refresh the unfinished bulk jobs' gauges (one query on the status index); an unreachable database
    leaves the last reading (no 500)."""
    read = getattr(request.app.state, "job_figures", None)
    if read is None:
        return
    try:
        jobs, pending = await read()
    except Exception as exc:
        logger.warning("metrics.jobs_unreadable", extra={"error": type(exc).__name__})
        return
    metrics.jobs.observe_unfinished(jobs, pending)
