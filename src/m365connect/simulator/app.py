"""The simulator's ASGI application: login paths, Graph v1.0 and admin endpoints on one server."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from m365connect.simulator.admin import admin_routes
from m365connect.simulator.graph import graph_routes
from m365connect.simulator.identity import identity_routes
from m365connect.simulator.state import SimulatorState


async def _not_found(request: Request) -> Response:
    """Any other path: nothing is simulated there."""
    message = f"The simulator serves no endpoint at {request.url.path}."
    return JSONResponse({"error": {"code": "NotFound", "message": message}}, status_code=404)


def create_app(state: SimulatorState) -> Starlette:
    """Build the application for one simulator state (admin, Graph, then identity routes)."""
    methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
    return Starlette(
        routes=[
            *admin_routes(state),
            *graph_routes(state),
            *identity_routes(state),
            Route("/{path:path}", _not_found, methods=methods),
        ]
    )
