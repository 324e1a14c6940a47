"""Microsoft Graph v1.0: bearer-token checks, routing, injected faults and the HTTP rendering."""

from __future__ import annotations

import json
import time
import uuid

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from m365connect.simulator.clouds import GLOBAL, GRAPH_APP_ID, audiences, path_prefix
from m365connect.simulator.graph_batch import run_batch
from m365connect.simulator.graph_budgets import charge, outlook_slot
from m365connect.simulator.graph_core import (
    ODATA_JSON,
    Caller,
    GraphError,
    GraphRequest,
    GraphResponse,
    injected_error,
    method_not_allowed,
    resource_segments,
    segment_not_found,
)
from m365connect.simulator.graph_mail import mailbox_settings, send_mail
from m365connect.simulator.graph_users import get_user, list_users
from m365connect.simulator.state import Latency, SimulatorState
from m365connect.simulator.tokens import TokenError

_CLOCK_SKEW_SECONDS = 300
_WWW_AUTHENTICATE = (
    'Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", '
    f'client_id="{GRAPH_APP_ID}"'
)
_NAVIGATIONS = ("mailboxsettings", "sendmail")
# Graph's diagnostic header names the front end that served a call (support asks for it with the request
# ids); the simulator names itself, in Graph's JSON shape.
_AGS_DIAGNOSTIC = json.dumps(
    {
        "ServerInfo": {
            "DataCenter": "m365connect simulator",
            "Slice": "E",
            "Ring": "5",
            "ScaleUnit": "000",
            "RoleInstance": "fake-microsoft",
        }
    },
    separators=(",", ":"),
)
_MALFORMED = b'{"@odata.context":"https://graph.microsoft.com/v1.0/$metadata#users","value":[{"id":"'


def _unauthorized(message: str) -> GraphError:
    headers = {"WWW-Authenticate": _WWW_AUTHENTICATE}
    return GraphError(401, "InvalidAuthenticationToken", message, headers=headers)


def authenticate(state: SimulatorState, authorization: str | None, cloud: str = GLOBAL) -> Caller:
    """Check `Authorization: Bearer <token>` as Graph does and return who is calling (a token for
    another cloud's Graph has the wrong audience: national clouds' tokens are not interchangeable)."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorized("Access token is empty.")
    if token.count(".") != 2:
        raise _unauthorized("CompactToken parsing failed with error code: 80049217")
    try:
        claims = state.signer.decode(token.strip())
    except TokenError:
        raise _unauthorized("Access token validation failure.") from None
    if claims.get("aud") not in audiences(cloud):
        raise _unauthorized("Access token validation failure. Invalid audience.")
    now = time.time()
    nbf, exp = claims.get("nbf"), claims.get("exp")
    if not isinstance(nbf, int) or not isinstance(exp, int) or nbf > now + _CLOCK_SKEW_SECONDS or exp <= now:
        raise _unauthorized("Access token has expired or is not yet valid.")
    tenant = state.directory.tenant_by_id(str(claims.get("tid", "")))
    roles = claims.get("roles", [])
    if tenant is None or not isinstance(roles, list):
        raise _unauthorized("Access token validation failure.")
    return Caller(tenant=tenant, app_id=str(claims.get("appid", "")), roles=frozenset(map(str, roles)))


def dispatch(state: SimulatorState, request: GraphRequest) -> GraphResponse:
    """Route one Graph call (plain or from a batch) to its handler; raise GraphError on failure."""
    segments = resource_segments(request.path)
    head = segments[0]
    if head.lower() == "me":
        raise GraphError(400, "BadRequest", "/me request is only valid with delegated authentication flow.")
    elif head.lower() != "users":
        raise segment_not_found(head)
    return _users(state, request, segments[1:])


def _users(state: SimulatorState, request: GraphRequest, rest: list[str]) -> GraphResponse:
    """/users, /users/{key}, /users/{key}/mailboxSettings and /users/{key}/sendMail."""
    for depth, segment in enumerate(rest[1:], start=1):
        if depth > 1 or segment.lower() not in _NAVIGATIONS:
            raise segment_not_found(segment)
    navigation = rest[1].lower() if len(rest) == 2 else ""
    if request.method != ("POST" if navigation == "sendmail" else "GET"):
        raise method_not_allowed()
    if not rest:
        return list_users(request)
    if not navigation:
        return get_user(request, rest[0])
    if navigation == "mailboxsettings":
        return mailbox_settings(request, rest[0])
    return send_mail(request, rest[0], state.sent_mail)


class ConnectionReset(Exception):
    """Raised mid-response on purpose: the server drops the connection, as a reset does."""


class _ResetResponse(Response):
    """Starts a 200, sends part of the body, then aborts: the client sees the connection die mid-answer."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:  # noqa: ARG002 (ASGI signature)
        headers = [
            (b"content-type", ODATA_JSON.encode()),
            (b"content-length", str(len(_MALFORMED) * 4).encode()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": _MALFORMED, "more_body": True})
        raise ConnectionReset("graph_reset_rate: connection dropped on purpose")


def _injected_fault(state: SimulatorState, *, batch: bool) -> Response | None:
    """Plain requests may be throttled (429) or unavailable (503); any response may come back malformed
    or be cut off by a dropped connection."""
    fault = None if batch else injected_error(state)
    if fault is not None:
        raise fault
    if state.faults.roll(state.faults.graph_malformed_rate):
        return Response(_MALFORMED, status_code=200, media_type=ODATA_JSON)
    if state.faults.roll(state.faults.graph_reset_rate):
        return _ResetResponse()
    return None


async def _plain(state: SimulatorState, request: GraphRequest, latency: Latency) -> GraphResponse:
    """A call outside $batch: its concurrency slot and budget (when enforced), the latency, the handler."""
    async with outlook_slot(state.meter, request):
        headers = charge(state.meter, request)
        await latency()
        try:
            response = dispatch(state, request)
        except GraphError as exc:
            exc.headers.update(headers)
            raise
    response.headers.update(headers)
    return response


async def _answer(
    state: SimulatorState, request: Request, request_id: str, client_request_id: str, cloud: str
) -> Response:
    path = "/" + request.path_params.get("path", "")
    batch = path.strip("/").lower() == "$batch"
    if batch:
        state.stats.batch_requests += 1
    latency = Latency(state)
    try:
        caller = authenticate(state, request.headers.get("authorization"), cloud)
        malformed = _injected_fault(state, batch=batch)
        if malformed is not None:
            await latency()
            return malformed
        graph_request = GraphRequest(
            method=request.method,
            path=path,
            query=tuple(request.query_params.multi_items()),
            headers={k.lower(): v for k, v in request.headers.items()},
            body=await request.body(),
            caller=caller,
            service_root=str(request.base_url).rstrip("/") + path_prefix(cloud) + "/v1.0",
        )
        if batch:
            response = await run_batch(
                state, lambda sub: dispatch(state, sub), graph_request, request_id, latency
            )
        else:
            response = await _plain(state, graph_request, latency)
    except GraphError as exc:
        await latency()
        response = exc.to_response(request_id, client_request_id)
    return render(response)


def render(response: GraphResponse) -> Response:
    """Turn a GraphResponse into an HTTP response (no body and no Content-Type for e.g. 202)."""
    headers = dict(response.headers)
    media_type = headers.pop("Content-Type", ODATA_JSON)
    if response.body is None:
        return Response(status_code=response.status, headers=headers)
    content = json.dumps(response.body, ensure_ascii=False, separators=(",", ":")).encode()
    return Response(content, status_code=response.status, headers=headers, media_type=media_type)


def graph_routes(state: SimulatorState, cloud: str = GLOBAL) -> list[BaseRoute]:
    """The graph.microsoft.com/v1.0 paths (or another cloud's Graph), bound to one simulator state."""

    async def endpoint(request: Request) -> Response:
        """Any Graph v1.0 call, including $batch."""
        request_id = str(uuid.uuid4())
        client_request_id = request.headers.get("client-request-id") or request_id
        state.stats.graph_requests += 1
        state.stats.count_cloud(cloud, "graph_requests")
        response = await _answer(state, request, request_id, client_request_id, cloud)
        response.headers["request-id"] = request_id
        response.headers["client-request-id"] = client_request_id
        response.headers["x-ms-ags-diagnostic"] = _AGS_DIAGNOSTIC
        response.headers["OData-Version"] = "4.0"
        return response

    methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
    return [Route("/v1.0/{path:path}", endpoint, methods=methods), Route("/v1.0", endpoint, methods=methods)]
