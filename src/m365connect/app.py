"""create_app(settings) -> FastAPI; the lifespan builds the engine, HTTP clients and checkers."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from fastapi import FastAPI

from m365connect.accounts.authenticator import KeyAuthenticator, RefusedKeys
from m365connect.api import probes
from m365connect.api.auth_edge import ApiKeyGate
from m365connect.api.edge import EdgeMiddleware
from m365connect.api.error_handlers import install_error_handlers
from m365connect.api.openapi import install_openapi
from m365connect.console.router import install_console
from m365connect.credentials.router import router as credentials_router
from m365connect.events.router import router as events_router
from m365connect.health.router import router as health_router
from m365connect.health.service import state_counts as health_states
from m365connect.jobs.router import router as jobs_router
from m365connect.jobs.service import unfinished_jobs
from m365connect.mailboxes.router import router as mailboxes_router
from m365connect.observability import Metrics, RequestObserverMiddleware, metrics_router
from m365connect.settings import Settings
from m365connect.state import AppState, open_state
from m365connect.webhooks.router import router as webhooks_router

API_DESCRIPTION = (
    "Connect Microsoft 365 mailboxes in bulk through Microsoft Graph app-only credentials. "
    "Compatible with Woodpecker's public REST API v2 for Microsoft mailboxes. "
    "Every route except `/healthz`, `/readyz` and `/metrics` needs the `x-api-key` header."
)


def create_app(settings: Settings, *, state: AppState | None = None) -> FastAPI:
    """The ASGI app; with `state` given (tests), the caller owns the long-lived objects."""
    metrics = state.metrics if state is not None else Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if state is not None:
            yield
            return
        async with open_state(settings, metrics=metrics) as built:
            app.state.m365connect = built
            app.state.queue_figures = built.work.stats
            app.state.health_figures = partial(health_states, built)
            app.state.job_figures = partial(unfinished_jobs, built)
            # Everything built at start-up lives as long as the process: keep it out of the collector's
            # full passes (measured in bench/: full collections during a bulk of 1000, 98-125 ms -> 32-42 ms).
            gc.freeze()
            if not settings.serve_work:  # the work is left to `m365connect worker` processes
                yield
                return
            # serve runs the background work too (API.md 5); at shutdown its running jobs finish first.
            stop = asyncio.Event()
            background = asyncio.create_task(built.work.run(stop))
            try:
                yield
            finally:
                stop.set()
                await background

    app = FastAPI(title="m365connect", version="0.1.0", description=API_DESCRIPTION, lifespan=lifespan)
    app.state.metrics = metrics
    if state is not None:
        app.state.m365connect = state
        app.state.queue_figures = state.work.stats
        app.state.health_figures = partial(health_states, state)
        app.state.job_figures = partial(unfinished_jobs, state)
    install_error_handlers(app)
    api_routers = (
        credentials_router,
        jobs_router,
        mailboxes_router,
        events_router,
        webhooks_router,
        health_router,
    )
    authenticator = KeyAuthenticator(refused=RefusedKeys(ttl_seconds=settings.auth_refusal_cache_seconds))
    app.add_middleware(  # inside EdgeMiddleware: its refusals get the request id and security headers
        ApiKeyGate,
        routes=tuple(route for router in api_routers for route in router.routes),
        authenticator=authenticator,
    )
    app.add_middleware(
        EdgeMiddleware,
        max_body_bytes=settings.max_body_bytes,
        max_job_body_bytes=settings.max_job_body_bytes,
    )
    framework_paths = (app.openapi_url, app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url)
    app.add_middleware(  # added last: the outermost
        RequestObserverMiddleware,
        metrics=metrics,
        fixed_paths=frozenset(path for path in framework_paths if path),
    )
    app.include_router(probes.router)
    if settings.metrics_enabled:
        app.include_router(metrics_router)
    for router in api_routers:
        app.include_router(router)
    if settings.console_enabled:
        install_console(app, authenticator=authenticator)
    install_openapi(app)
    return app
