"""The simulator's ASGI application: login paths, Graph v1.0 and admin endpoints on one server."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from m365connect.simulator.admin import admin_routes
from m365connect.simulator.clouds import CLOUDS, GLOBAL, path_prefix
from m365connect.simulator.graph import graph_routes
from m365connect.simulator.identity import identity_routes
from m365connect.simulator.state import SimulatorState


async def _not_found(request: Request) -> Response:
    """Any other path: nothing is simulated there."""
    message = f"The simulator serves no endpoint at {request.url.path}."
    return JSONResponse({"error": {"code": "NotFound", "message": message}}, status_code=404)


def _national_clouds(state: SimulatorState) -> list[BaseRoute]:
    """Each national cloud's login and Graph paths under its own prefix (simulator/clouds.py)."""
    return [
        Mount(path_prefix(cloud), routes=[*graph_routes(state, cloud), *identity_routes(state, cloud)])
        for cloud in CLOUDS
        if cloud != GLOBAL
    ]


def create_app(state: SimulatorState) -> Starlette:
    """Build the application for one simulator state (admin, national clouds, Graph, then identity)."""
    methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
    return Starlette(
        routes=[
            *admin_routes(state),
            *_national_clouds(state),
            *graph_routes(state),
            *identity_routes(state),
            Route("/{path:path}", _not_found, methods=methods),
        ]
    )
