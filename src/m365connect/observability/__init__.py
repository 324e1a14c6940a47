"""Logs and metrics: JSON log lines, the per-request log line, Prometheus metrics on a per-app registry."""

from m365connect.observability.logs import JsonFormatter, TextFormatter, configure_logging
from m365connect.observability.metrics import Metrics
from m365connect.observability.requests import RequestObserverMiddleware
from m365connect.observability.routes import MetricsDep
from m365connect.observability.routes import router as metrics_router

__all__ = [
    "JsonFormatter",
    "Metrics",
    "MetricsDep",
    "RequestObserverMiddleware",
    "TextFormatter",
    "configure_logging",
    "metrics_router",
]
