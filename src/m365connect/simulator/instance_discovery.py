"""GET /common/discovery/instance: the identity platform's instance discovery, as MSAL calls it.

MSAL asks it, before any token request, whether the authority's host is a Microsoft cloud and where the
tenant's OpenID configuration lives (`tenant_discovery_endpoint`); it later reads `metadata` for the host's
aliases (its token-cache environments, fetched from login.microsoftonline.com whatever the authority,
e.g. after a failed token request). Without this endpoint MSAL stops at "HTTP Error: 404" and never shows
the token endpoint's AADSTS error. The simulator's own host is an instance, and so are Microsoft's hosts
(a client may reach the simulator under those names, through a hosts file or a proxy); any other host is
Microsoft's 400 `invalid_instance` (AADSTS50049). Sources: docs/simulator.md.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse

from m365connect.simulator.token_grant import AadError, aad_error_response

# Microsoft lets clients cache the answer for a day (the header login.microsoftonline.com sends).
_HEADERS = {"Cache-Control": "max-age=86400, private", "Access-Control-Allow-Origin": "*"}
_DEFAULT_API_VERSION = "1.1"
# Microsoft's answer lists every cloud's hosts, one group per cloud (recorded answers of
# login.microsoftonline.com, api-version 1.1).
MICROSOFT_CLOUDS: tuple[dict[str, Any], ...] = (
    {
        "preferred_network": "login.microsoftonline.com",
        "preferred_cache": "login.windows.net",
        "aliases": [
            "login.microsoftonline.com",
            "login.windows.net",
            "login.microsoft.com",
            "sts.windows.net",
        ],
    },
    {
        "preferred_network": "login.partner.microsoftonline.cn",
        "preferred_cache": "login.partner.microsoftonline.cn",
        "aliases": ["login.partner.microsoftonline.cn", "login.chinacloudapi.cn"],
    },
    {
        "preferred_network": "login.microsoftonline.de",
        "preferred_cache": "login.microsoftonline.de",
        "aliases": ["login.microsoftonline.de"],
    },
    {
        "preferred_network": "login.microsoftonline.us",
        "preferred_cache": "login.microsoftonline.us",
        "aliases": ["login.microsoftonline.us", "login.usgovcloudapi.net"],
    },
    {
        "preferred_network": "login-us.microsoftonline.com",
        "preferred_cache": "login-us.microsoftonline.com",
        "aliases": ["login-us.microsoftonline.com"],
    },
)
_MICROSOFT_HOSTS = frozenset(alias for cloud in MICROSOFT_CLOUDS for alias in cloud["aliases"])


def _unknown_instance() -> AadError:
    message = (
        "Unknown or invalid instance. The authority (authorization_endpoint) is not a known Microsoft "
        "identity platform instance."
    )
    return AadError(400, "invalid_instance", 50049, message)


def _instance_and_tenant(authorization_endpoint: str, own_host: str) -> tuple[str, str]:
    """Host and tenant of `https://{host}/{tenant}/oauth2[/v2.0]/authorize`, or raise 50049."""
    try:
        parts = urlsplit(authorization_endpoint)
        host = (parts.hostname or "").lower()
    except ValueError:
        raise _unknown_instance() from None
    segments = parts.path.strip("/").split("/")
    known = host == own_host or host in _MICROSOFT_HOSTS
    if parts.scheme != "https" or not known or len(segments) < 2 or not segments[0]:
        raise _unknown_instance()
    return host, segments[0]


def instance_discovery_body(request: Request) -> dict[str, Any]:
    """The discovery answer: the tenant's OpenID configuration on the host asked about (this server's own
    URL, with its port, when it is this server: MSAL drops the port from the endpoint it sends)."""
    own_host = (request.url.hostname or "").lower()
    endpoint = request.query_params.get("authorization_endpoint", "")
    host, tenant = _instance_and_tenant(endpoint, own_host)
    base = str(request.base_url).rstrip("/") if host == own_host else f"https://{host}"
    simulator = {"preferred_network": own_host, "preferred_cache": own_host, "aliases": [own_host]}
    return {
        "tenant_discovery_endpoint": f"{base}/{tenant}/v2.0/.well-known/openid-configuration",
        "api-version": request.query_params.get("api-version", _DEFAULT_API_VERSION),
        "metadata": [*MICROSOFT_CLOUDS, simulator],
    }


async def instance_discovery(request: Request) -> JSONResponse:
    """GET /common/discovery/instance?api-version=1.1&authorization_endpoint=..."""
    try:
        return JSONResponse(instance_discovery_body(request), headers=_HEADERS)
    except AadError as exc:
        return aad_error_response(exc, request)
