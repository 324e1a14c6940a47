"""The client-credentials grant: AAD's request validation, its error bodies, and the access token."""

from __future__ import annotations

import base64
import binascii
import hmac
import re
import time
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote_plus

from starlette.requests import Request
from starlette.responses import JSONResponse

from m365connect.simulator.aad_errors import AadError as AadError  # re-exported: its old home
from m365connect.simulator.assertions import check_assertion
from m365connect.simulator.clouds import GLOBAL, GRAPH_APP_ID, GRAPH_RESOURCES
from m365connect.simulator.directory import DirectoryApp, DirectoryTenant
from m365connect.simulator.state import SimulatorState

GRAPH_AUDIENCE = GRAPH_RESOURCES[GLOBAL]
TOKEN_LIFETIME_SECONDS = 3599
META_TENANTS = frozenset({"common", "organizations", "consumers"})
_GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.IGNORECASE)
_DNS = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{1,63}$", re.IGNORECASE)
NO_CACHE = {"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"}


def _missing(parameter: str) -> AadError:
    message = f"The request body must contain the following parameter: '{parameter}'."
    return AadError(400, "invalid_request", 900144, message)


def aad_error_response(exc: AadError, request: Request) -> JSONResponse:
    """Render an AadError in the identity platform's JSON shape, with trace and correlation ids."""
    trace_id = str(uuid.uuid4())
    correlation_id = request.headers.get("client-request-id") or str(uuid.uuid4())
    timestamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    body = {
        "error": exc.error,
        "error_description": (
            f"AADSTS{exc.code}: {exc.message}\r\nTrace ID: {trace_id}\r\n"
            f"Correlation ID: {correlation_id}\r\nTimestamp: {timestamp}"
        ),
        "error_codes": [exc.code],
        "timestamp": timestamp,
        "trace_id": trace_id,
        "correlation_id": correlation_id,
        "error_uri": f"https://login.microsoftonline.com/error?code={exc.code}",
    }
    headers = {**NO_CACHE, "x-ms-request-id": trace_id, "client-request-id": correlation_id}
    return JSONResponse(body, status_code=exc.status, headers=headers)


def resolve_tenant(state: SimulatorState, name: str, cloud: str = GLOBAL) -> DirectoryTenant:
    """Find the tenant named by GUID or verified domain, or raise 900023 / 90002 as AAD does (a tenant
    of another cloud is not found: each cloud has its own directory)."""
    if not (_GUID.match(name) or _DNS.match(name)):
        message = (
            f"Specified tenant identifier '{name}' is neither a valid DNS name, nor a valid external domain."
        )
        raise AadError(400, "invalid_request", 900023, message)
    tenant = state.directory.tenant(name)
    if tenant is None or tenant.cloud != cloud:
        raise AadError(
            400,
            "invalid_tenant",
            90002,
            f"Tenant '{name}' not found. Check to make sure you have the correct tenant ID and are signing "
            "into the correct cloud. Check with your subscription administrator, this may happen if there "
            "are no active subscriptions for the tenant.",
        )
    return tenant


def _credentials(request: Request, form: dict[str, str]) -> tuple[str, str]:
    """Client id and secret from HTTP Basic (RFC 6749 2.3.1, preferred when present) or the form."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "basic":
        try:
            user, sep, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            sep = ""
        if sep:
            return unquote_plus(user), unquote_plus(password)
    return form.get("client_id", ""), form.get("client_secret", "")


def requesting_client(request: Request, form: dict[str, str]) -> str:
    """The client id a token request names (HTTP Basic or form), '' when it names none."""
    return _credentials(request, form)[0]


def _graph_audience(scope: str, cloud: str) -> str:
    """Check the scope the way AAD does for client credentials and return the token audience: another
    cloud's Graph is no resource principal here (AADSTS500011, as a national cloud answers)."""
    scopes = scope.split()
    if len(scopes) != 1:
        message = (
            "The provided value for the input parameter 'scope' is not valid. "
            f"The scope {scope} is not valid."
        )
        raise AadError(400, "invalid_scope", 70011, message)
    if not scopes[0].endswith("/.default"):
        raise AadError(
            400,
            "invalid_scope",
            1002012,
            f"The provided value for scope {scope} is not valid. Client credential flows must have a scope "
            "value with /.default suffixed to the resource identifier (application ID URI).",
        )
    resource = scopes[0].removesuffix("/.default").rstrip("/").lower()
    if resource in (GRAPH_RESOURCES[cloud], GRAPH_APP_ID):
        return resource
    raise AadError(
        400,
        "invalid_resource",
        500011,
        f"The resource principal named {resource} was not found in the tenant. This can happen if the "
        "application has not been installed by the administrator of the tenant or consented to by any user "
        "in the tenant. You might have sent your authentication request to the wrong tenant.",
    )


def _common_error(state: SimulatorState, tenant_name: str, client_id: str) -> AadError:
    """The error for the /common family: 50194 for a (single-tenant) app we know, else 700016."""
    app = state.directory.app_anywhere(client_id)
    if app is None:
        return _unknown_app(tenant_name, client_id)
    return AadError(
        400,
        "invalid_request",
        50194,
        f"Application '{app.client_id}'({app.name}) is not configured as a multi-tenant application. "
        "Usage of the /common endpoint is not supported for such applications created after "
        "'10/15/2018'. Use a tenant-specific endpoint or configure the application to be multi-tenant.",
    )


def _unknown_app(tenant_name: str, client_id: str) -> AadError:
    return AadError(
        400,
        "unauthorized_client",
        700016,
        f"Application with identifier '{client_id}' was not found in the directory '{tenant_name}'. This "
        "can happen if the application has not been installed by the administrator of the tenant or "
        "consented to by any user in the tenant. You may have sent your authentication request to the "
        "wrong tenant.",
    )


def _find_app(tenant_name: str, tenant: DirectoryTenant, client_id: str) -> DirectoryApp:
    app = tenant.apps.get(client_id.lower())
    if app is None:
        raise _unknown_app(tenant_name, client_id)
    if not app.enabled:
        raise AadError(
            400, "unauthorized_client", 7000112, f"Application '{app.client_id}'({app.name}) is disabled."
        )
    return app


def _check_secret(app: DirectoryApp, secret: str) -> None:
    if not secret:
        message = (
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'."
        )
        raise AadError(401, "invalid_client", 7000218, message)
    match = next((s for s in app.secrets if hmac.compare_digest(s.value.encode(), secret.encode())), None)
    if match is None:
        raise AadError(
            401,
            "invalid_client",
            7000215,
            "Invalid client secret provided. Ensure the secret being sent in the request is the client "
            f"secret value, not the client secret ID, for a secret added to app '{app.client_id}'.",
        )
    if match.expired(datetime.now(UTC)):
        raise AadError(
            401,
            "invalid_client",
            7000222,
            f"The provided client secret keys for app '{app.client_id}' are expired. Visit the Azure portal "
            "to create new keys for your app: https://aka.ms/NewClientSecret, or consider using certificate "
            "credentials for added security: https://aka.ms/certCreds.",
        )


def _token_urls(request: Request) -> tuple[str, ...]:
    """The audiences an assertion may name: this endpoint (v2.0), or its v1 twin, as Entra accepts."""
    v2 = str(request.url.replace(query=""))
    return (v2, v2.replace("/oauth2/v2.0/token", "/oauth2/token"))


def _claims(tenant_id: str, app: DirectoryApp, audience: str) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "aud": audience,
        "iss": f"https://sts.windows.net/{tenant_id}/",
        "iat": now,
        "nbf": now,
        "exp": now + TOKEN_LIFETIME_SECONDS,
        "app_displayname": app.name,
        "appid": app.client_id,
        "appidacr": "1",
        "idp": f"https://sts.windows.net/{tenant_id}/",
        "idtyp": "app",
        "oid": app.object_id,
        "sub": app.object_id,
        "tid": tenant_id,
        "uti": base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="),
        "ver": "1.0",
    }
    if app.roles:
        claims["roles"] = list(app.roles)
    return claims


def issue_token(
    state: SimulatorState, request: Request, tenant_name: str, form: dict[str, str], cloud: str = GLOBAL
) -> dict[str, Any]:
    """Validate a client-credentials request in AAD's order and return the token response body."""
    tenant = None if tenant_name.lower() in META_TENANTS else resolve_tenant(state, tenant_name, cloud)
    grant_type = form.get("grant_type", "")
    if not grant_type:
        raise _missing("grant_type")
    if grant_type != "client_credentials":
        message = f"The app requested an unsupported grant type '{grant_type}'."
        raise AadError(400, "unsupported_grant_type", 70003, message)
    client_id, secret = _credentials(request, form)
    if not client_id:
        raise _missing("client_id")
    if not form.get("scope"):
        raise _missing("scope")
    audience = _graph_audience(form["scope"], cloud)
    if tenant is None:
        raise _common_error(state, tenant_name, client_id)
    app = _find_app(tenant_name, tenant, client_id)
    if "client_assertion" in form or "client_assertion_type" in form:
        check_assertion(app, form, client_id=client_id, token_urls=_token_urls(request))
    else:
        _check_secret(app, secret)
    token = state.signer.encode(_claims(tenant.id, app, audience))
    return {
        "token_type": "Bearer",
        "expires_in": TOKEN_LIFETIME_SECONDS,
        "ext_expires_in": TOKEN_LIFETIME_SECONDS,
        "access_token": token,
    }
