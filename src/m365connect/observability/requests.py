"""One `http.request` log line and the HTTP metrics for every request (the outermost middleware)."""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from m365connect.observability.metrics import Metrics

logger = logging.getLogger("m365connect.access")

UNMATCHED = "<unmatched>"
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Polled every few seconds by orchestrators and scrapers: their successful answers are logged at DEBUG.
PROBE_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})


class RequestObserverMiddleware:
    """Logs one line per request (request id, account id, route template, method, status, duration) and
    counts it. Outermost, so it sees the final status of every answer, including the edge's 413 and 500."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics, fixed_paths: frozenset[str] = frozenset()) -> None:
        self.app = app
        self.metrics = metrics
        # Routes the framework adds itself (/docs, /openapi.json) do not put themselves in the scope.
        self.fixed_paths = fixed_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one request."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # if the app fails before answering, the server answers 500

        async def observed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        finally:
            self._record(scope, status, time.perf_counter() - started)

    def _record(self, scope: Scope, status: int, seconds: float) -> None:
        # The router stores the matched route in the scope, and deps the authenticated account.
        route: str | None = getattr(scope.get("route"), "path", None)
        if route is None and scope["path"] in self.fixed_paths:
            route = scope["path"]
        method = scope["method"] if scope["method"] in KNOWN_METHODS else "OTHER"
        label = route or UNMATCHED
        self.metrics.http_requests.labels(label, method, str(status)).inc()
        self.metrics.http_duration.labels(label, method).observe(seconds)
        state = scope.get("state") or {}
        level = logging.DEBUG if route in PROBE_ROUTES and status < 400 else logging.INFO
        logger.log(
            level,
            "http.request",
            extra={
                "request_id": state.get("request_id"),
                "account_id": state.get("account_id"),
                "method": method,
                "route": route,
                "status": status,
                "duration_ms": round(seconds * 1000, 1),
            },
        )
