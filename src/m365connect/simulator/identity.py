"""Microsoft identity platform routes: the v2.0 token endpoint, instance and OpenID discovery, keys URL."""

from __future__ import annotations

import math
import uuid
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from m365connect.simulator.clouds import GLOBAL, INSTANCE_NAMES, path_prefix
from m365connect.simulator.instance_discovery import instance_discovery
from m365connect.simulator.state import SimulatorState
from m365connect.simulator.token_grant import (
    META_TENANTS,
    NO_CACHE,
    AadError,
    aad_error_response,
    issue_token,
    requesting_client,
    resolve_tenant,
)

TOKEN_RETRY_AFTER_SECONDS = 1  # AAD writes Retry-After as an integer; the simulator always asks for 1 s


def identity_routes(state: SimulatorState, cloud: str = GLOBAL) -> list[BaseRoute]:
    """The login.microsoftonline.com paths (or another cloud's login host), bound to one simulator state."""

    async def token(request: Request) -> Response:
        """POST /{tenant}/oauth2/v2.0/token: the client-credentials grant."""
        state.stats.token_requests += 1
        state.stats.count_cloud(cloud, "token_requests")
        await state.injected_latency()
        fault = _token_fault(state, request)
        if fault is not None:
            return fault
        try:
            if request.method != "POST":
                message = (
                    f"The endpoint only accepts POST, OPTIONS requests. Received a {request.method} request."
                )
                raise AadError(400, "invalid_request", 900561, message)
            form = await _read_form(request)
            over_budget = _over_budget(state, request, form)
            if over_budget is not None:
                return over_budget
            body = issue_token(state, request, request.path_params["tenant"], form, cloud)
        except AadError as exc:
            return aad_error_response(exc, request)
        headers = {**NO_CACHE, "x-ms-request-id": str(uuid.uuid4())}
        return JSONResponse(body, headers=_echo_client_request_id(request, headers))

    async def discovery(request: Request) -> Response:
        """GET /{tenant}/v2.0/.well-known/openid-configuration (what MSAL reads first)."""
        await state.injected_latency()
        try:
            return JSONResponse(_openid_configuration(state, request, request.path_params["tenant"], cloud))
        except AadError as exc:
            return aad_error_response(exc, request)

    async def keys(_request: Request) -> Response:
        """GET /{tenant}/discovery/v2.0/keys: empty, since tokens are HS256 with a private key."""
        await state.injected_latency()
        return JSONResponse({"keys": []})

    return [
        Route("/common/discovery/instance", instance_discovery, methods=["GET"]),
        Route("/{tenant}/oauth2/v2.0/token", token, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
        Route("/{tenant}/v2.0/.well-known/openid-configuration", discovery, methods=["GET"]),
        Route("/{tenant}/discovery/v2.0/keys", keys, methods=["GET"]),
    ]


def _token_fault(state: SimulatorState, request: Request) -> Response | None:
    """Injected token-endpoint faults: 429 as AAD sends it (plain text body), or 503."""
    if state.faults.roll(state.faults.token_throttle_rate):
        state.stats.throttled += 1
        headers = {"Retry-After": str(TOKEN_RETRY_AFTER_SECONDS)}
        return PlainTextResponse("Too Many Requests", status_code=429, headers=headers)
    if state.faults.roll(state.faults.token_unavailable_rate):
        message = "A transient error has occurred. Please try again."
        return aad_error_response(AadError(503, "temporarily_unavailable", 50033, message), request)
    return None


def _over_budget(state: SimulatorState, request: Request, form: dict[str, str]) -> Response | None:
    """With budgets enforced, an app over its token requests per window in a tenant gets 429 with
    `Retry-After: 60` (Microsoft's answer to over-calling client_credentials), or longer if the window
    needs longer to free a request."""
    meter = state.meter
    client_id = requesting_client(request, form)
    if not meter.budgets.enabled or not client_id:
        return None
    name = request.path_params["tenant"]
    tenant = state.directory.tenant(name)
    wait = meter.token(tenant=tenant.id if tenant is not None else name, client_id=client_id)
    if not wait:
        return None
    retry_after = max(meter.budgets.token_retry_after, math.ceil(wait))
    headers = {"Retry-After": str(retry_after)}
    return PlainTextResponse("Too Many Requests", status_code=429, headers=headers)


def _echo_client_request_id(request: Request, headers: dict[str, str]) -> dict[str, str]:
    client_request_id = request.headers.get("client-request-id")
    return {**headers, "client-request-id": client_request_id} if client_request_id else dict(headers)


async def _read_form(request: Request) -> dict[str, str]:
    """Parse an x-www-form-urlencoded body (first value wins); any other body reads as empty."""
    if not request.headers.get("content-type", "").lower().startswith("application/x-www-form-urlencoded"):
        return {}
    try:
        text = (await request.body()).decode()
    except UnicodeDecodeError:
        return {}
    form: dict[str, str] = {}
    for key, value in parse_qsl(text, keep_blank_values=True):
        form.setdefault(key, value)
    return form


def _openid_configuration(
    state: SimulatorState, request: Request, tenant_name: str, cloud: str
) -> dict[str, Any]:
    """The v2.0 discovery document, with every endpoint on this server (as MSAL requires https URLs)."""
    if tenant_name.lower() in META_TENANTS:
        segment, issuer_tenant = tenant_name.lower(), "{tenantid}"
    else:
        segment = issuer_tenant = resolve_tenant(state, tenant_name, cloud).id
    base = str(request.base_url).rstrip("/") + path_prefix(cloud)
    oauth = f"{base}/{segment}/oauth2/v2.0"
    return {
        "token_endpoint": f"{oauth}/token",
        "token_endpoint_auth_methods_supported": [
            "client_secret_post",
            "private_key_jwt",
            "client_secret_basic",
        ],
        "jwks_uri": f"{base}/{segment}/discovery/v2.0/keys",
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": f"{base}/{issuer_tenant}/v2.0",
        "request_uri_parameter_supported": False,
        "authorization_endpoint": f"{oauth}/authorize",
        "device_authorization_endpoint": f"{oauth}/devicecode",
        "end_session_endpoint": f"{oauth}/logout",
        "tenant_region_scope": "NA",
        "cloud_instance_name": INSTANCE_NAMES[cloud][0],
        "cloud_graph_host_name": "graph.windows.net",
        "msgraph_host": INSTANCE_NAMES[cloud][1],
    }
