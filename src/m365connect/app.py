"""create_app(settings) -> FastAPI; the lifespan builds the engine, HTTP clients and checkers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from m365connect import health
from m365connect.api_errors import install_error_handlers
from m365connect.credentials.router import router as credentials_router
from m365connect.mailboxes.router import router as mailboxes_router
from m365connect.middleware import EdgeMiddleware
from m365connect.openapi import install_openapi
from m365connect.settings import Settings
from m365connect.state import AppState, open_state

API_DESCRIPTION = (
    "Connect Microsoft 365 mailboxes in bulk through Microsoft Graph app-only credentials. "
    "Compatible with Woodpecker's public REST API v2 for Microsoft mailboxes. "
    "Every route except the health checks needs the `x-api-key` header."
)


def create_app(settings: Settings, *, state: AppState | None = None) -> FastAPI:
    """The ASGI app; with `state` given (tests), the caller owns the long-lived objects."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if state is not None:
            app.state.m365connect = state
            yield
            return
        async with open_state(settings) as built:
            app.state.m365connect = built
            yield

    app = FastAPI(title="m365connect", version="0.1.0", description=API_DESCRIPTION, lifespan=lifespan)
    if state is not None:
        app.state.m365connect = state
    install_error_handlers(app)
    app.add_middleware(EdgeMiddleware, max_body_bytes=settings.max_body_bytes)
    app.include_router(health.router)
    app.include_router(credentials_router)
    app.include_router(mailboxes_router)
    install_openapi(app)
    return app
