"""Admin endpoints under /_simulator: counters, live fault knobs and the record of sent mail."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from m365connect.simulator.directory import Directory
from m365connect.simulator.scenario import Scenario
from m365connect.simulator.state import SimulatorState
from m365connect.simulator.tenant_changes import UnknownObject, change_app, change_tenant, change_user


def _bad_request(message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": "BadRequest", "message": message}}, status_code=400)


async def _json_object(request: Request) -> dict[str, Any] | None:
    try:
        changes = json.loads(await request.body())
    except ValueError:
        return None
    return changes if isinstance(changes, dict) else None


def _problems(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())


class _Admin:
    """The admin handlers of one simulator state."""

    def __init__(self, state: SimulatorState) -> None:
        self.state = state

    async def get_stats(self, _request: Request) -> Response:
        """GET /_simulator/stats: the request counters."""
        return JSONResponse(self.state.stats.snapshot())

    async def get_cloud_stats(self, _request: Request) -> Response:
        """GET /_simulator/stats/clouds: token and Graph requests per national cloud (path prefix)."""
        return JSONResponse(self.state.stats.clouds_snapshot())

    async def reset_stats(self, _request: Request) -> Response:
        """POST /_simulator/stats/reset: set every counter back to zero."""
        self.state.stats.reset()
        return JSONResponse(self.state.stats.snapshot())

    async def get_faults(self, _request: Request) -> Response:
        """GET /_simulator/faults: the current fault knobs."""
        return JSONResponse(self.state.faults.model_dump())

    async def put_faults(self, request: Request) -> Response:
        """PUT /_simulator/faults: partial update of the knobs (a seed restarts the random sequence)."""
        changes = await _json_object(request)
        if changes is None:
            return _bad_request("The body must be a JSON object of fault knobs.")
        try:
            self.state.faults.update(changes)
        except ValidationError as exc:
            return _bad_request(_problems(exc))
        return JSONResponse(self.state.faults.model_dump())

    async def get_budgets(self, _request: Request) -> Response:
        """GET /_simulator/budgets: the budget knobs."""
        return JSONResponse(self.state.meter.budgets.model_dump())

    async def put_budgets(self, request: Request) -> Response:
        """PUT /_simulator/budgets: partial update of the budget knobs (`{"enabled": true}`)."""
        changes = await _json_object(request)
        if changes is None:
            return _bad_request("The body must be a JSON object of budget knobs.")
        try:
            self.state.meter.budgets.update(changes)
        except ValidationError as exc:
            return _bad_request(_problems(exc))
        return JSONResponse(self.state.meter.budgets.model_dump())

    async def get_budget_stats(self, _request: Request) -> Response:
        """GET /_simulator/budgets/stats: 429s per budget, units per tenant, peak Outlook concurrency."""
        return JSONResponse(self.state.meter.snapshot())

    async def reset_budgets(self, _request: Request) -> Response:
        """POST /_simulator/budgets/reset: empty every meter (full budgets) and zero its counters."""
        self.state.meter.reset()
        return JSONResponse(self.state.meter.snapshot())

    async def patch_user(self, request: Request) -> Response:
        """PATCH /_simulator/tenants/{tenant}/users/{user}: change a user's scenario fields now."""
        tenant, user = request.path_params["tenant"], request.path_params["user"]
        return await self._change(request, lambda s, c: change_user(s, tenant, user, c))

    async def patch_app(self, request: Request) -> Response:
        """PATCH /_simulator/tenants/{tenant}/apps/{client_id}: change an app's scenario fields now."""
        tenant, client_id = request.path_params["tenant"], request.path_params["client_id"]
        return await self._change(request, lambda s, c: change_app(s, tenant, client_id, c))

    async def patch_tenant(self, request: Request) -> Response:
        """PATCH /_simulator/tenants/{tenant}: change groups or exchange_role_assignments now."""
        tenant = request.path_params["tenant"]
        return await self._change(request, lambda s, c: change_tenant(s, tenant, c))

    async def _change(
        self, request: Request, apply: Callable[[Scenario, dict[str, Any]], Scenario]
    ) -> Response:
        changes = await _json_object(request)
        if changes is None:
            return _bad_request("The body must be a JSON object of scenario fields.")
        try:
            changed = apply(self.state.scenario, changes)
        except UnknownObject as exc:
            return JSONResponse({"error": {"code": "NotFound", "message": str(exc)}}, status_code=404)
        except ValidationError as exc:
            return _bad_request(_problems(exc))
        self.state.directory = Directory(changed)
        self.state.scenario = changed
        return Response(status_code=204)

    async def get_sent_mail(self, _request: Request) -> Response:
        """GET /_simulator/sent-mail: every message accepted by sendMail, oldest first."""
        return JSONResponse({"value": list(self.state.sent_mail)})

    async def clear_sent_mail(self, _request: Request) -> Response:
        """DELETE /_simulator/sent-mail: forget the sent messages."""
        self.state.sent_mail.clear()
        return Response(status_code=204)


def admin_routes(state: SimulatorState) -> list[BaseRoute]:
    """The /_simulator paths, bound to one simulator state."""
    admin = _Admin(state)
    return [
        Route("/_simulator/stats", admin.get_stats, methods=["GET"]),
        Route("/_simulator/stats/clouds", admin.get_cloud_stats, methods=["GET"]),
        Route("/_simulator/stats/reset", admin.reset_stats, methods=["POST"]),
        Route("/_simulator/faults", admin.get_faults, methods=["GET"]),
        Route("/_simulator/faults", admin.put_faults, methods=["PUT"]),
        Route("/_simulator/budgets", admin.get_budgets, methods=["GET"]),
        Route("/_simulator/budgets", admin.put_budgets, methods=["PUT"]),
        Route("/_simulator/budgets/stats", admin.get_budget_stats, methods=["GET"]),
        Route("/_simulator/budgets/reset", admin.reset_budgets, methods=["POST"]),
        Route("/_simulator/tenants/{tenant}", admin.patch_tenant, methods=["PATCH"]),
        Route("/_simulator/tenants/{tenant}/users/{user}", admin.patch_user, methods=["PATCH"]),
        Route("/_simulator/tenants/{tenant}/apps/{client_id}", admin.patch_app, methods=["PATCH"]),
        Route("/_simulator/sent-mail", admin.get_sent_mail, methods=["GET"]),
        Route("/_simulator/sent-mail", admin.clear_sent_mail, methods=["DELETE"]),
    ]
