"""Microsoft's national clouds as configuration data: login host, Graph root and Graph resource per cloud.

The table follows Microsoft's "National cloud deployments" page (graph-docs `concepts/deployments.md`) and
docs.azure.cn for China. The URLs may be overridden (M365CONNECT_CLOUD_URLS, so the simulator serves every
cloud); the Graph *resource* in the token scope never is: Entra issues a token for the cloud's own resource
only, wherever the requests are sent.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Literal, get_args

CloudName = Literal["global", "usgov", "usgov-dod", "china"]
CLOUD_NAMES: tuple[str, ...] = get_args(CloudName)
DEFAULT_CLOUD: CloudName = "global"
_URL_KEYS = frozenset({"login_url", "graph_url"})


@dataclass(frozen=True)
class CloudEndpoints:
    """Where one cloud's identity platform and Graph answer, and the Graph resource its tokens are for."""

    login_url: str
    graph_url: str
    graph_resource: str

    @property
    def scope(self) -> str:
        """The client-credentials scope: always the cloud's real Graph resource."""
        return f"{self.graph_resource}/.default"


MICROSOFT_CLOUDS: Mapping[str, CloudEndpoints] = {
    "global": CloudEndpoints(
        "https://login.microsoftonline.com", "https://graph.microsoft.com", "https://graph.microsoft.com"
    ),
    # GCC High (US Government L4)
    "usgov": CloudEndpoints(
        "https://login.microsoftonline.us", "https://graph.microsoft.us", "https://graph.microsoft.us"
    ),
    # DoD (US Government L5): the same login host as GCC High, its own Graph
    "usgov-dod": CloudEndpoints(
        "https://login.microsoftonline.us", "https://dod-graph.microsoft.us", "https://dod-graph.microsoft.us"
    ),
    # operated by 21Vianet
    "china": CloudEndpoints(
        "https://login.partner.microsoftonline.cn",
        "https://microsoftgraph.chinacloudapi.cn",
        "https://microsoftgraph.chinacloudapi.cn",
    ),
}


def _url(cloud: str, key: str, value: object) -> str:
    if not isinstance(value, str) or not value.startswith(("https://", "http://")):
        raise ValueError(f"{cloud}.{key} must be an http(s) URL")
    return value.rstrip("/")


def parse_cloud_urls(text: str | None) -> dict[str, dict[str, str]]:
    """The overrides of M365CONNECT_CLOUD_URLS; a ValueError says in one line what is wrong."""
    if not text or not text.strip():
        return {}
    try:
        raw = json.loads(text)
    except ValueError:
        raise ValueError(
            'not JSON; e.g. {"usgov": {"login_url": "https://...", "graph_url": "https://..."}}'
        ) from None
    if not isinstance(raw, dict):
        raise ValueError("must be a JSON object of clouds")
    parsed: dict[str, dict[str, str]] = {}
    for cloud, urls in raw.items():
        if cloud == DEFAULT_CLOUD:
            raise ValueError("'global' follows M365CONNECT_LOGIN_URL and M365CONNECT_GRAPH_URL")
        if cloud not in CLOUD_NAMES:
            raise ValueError(f"unknown cloud {cloud!r}: use {', '.join(CLOUD_NAMES[1:])}")
        if not isinstance(urls, dict) or not urls or set(urls) - _URL_KEYS:
            raise ValueError(f"{cloud} must be an object with login_url and/or graph_url")
        parsed[cloud] = {key: _url(cloud, key, value) for key, value in urls.items()}
    return parsed


def endpoint_table(*, login_url: str, graph_url: str, cloud_urls: str | None) -> dict[str, CloudEndpoints]:
    """Every cloud's endpoints: Microsoft's, `global` at the configured URLs, others as overridden."""
    table = dict(MICROSOFT_CLOUDS)
    table[DEFAULT_CLOUD] = replace(table[DEFAULT_CLOUD], login_url=login_url, graph_url=graph_url)
    for cloud, urls in parse_cloud_urls(cloud_urls).items():
        table[cloud] = replace(table[cloud], **urls)
    return table


# Microsoft's own initial-domain suffixes ("contoso.onmicrosoft.us"): Microsoft registers them in one cloud
# only, and a domain is verified in a single tenant, so such a domain names a tenant of exactly these
# clouds. A custom domain or a GUID says nothing about the cloud (docs/decisions.md).
INITIAL_DOMAIN_CLOUDS: tuple[tuple[str, frozenset[str]], ...] = (
    (".onmicrosoft.com", frozenset({"global"})),
    (".onmicrosoft.us", frozenset({"usgov", "usgov-dod"})),
    (".onmschina.cn", frozenset({"china"})),  # contoso.partner.onmschina.cn (older: contoso.onmschina.cn)
)


def tenant_domain_clouds(tenant: str) -> frozenset[str]:
    """The clouds in which a tenant named `tenant` (GUID or domain) can exist."""
    name = tenant.lower().rstrip(".")
    for suffix, clouds in INITIAL_DOMAIN_CLOUDS:
        if name.endswith(suffix):
            return clouds
    return frozenset(CLOUD_NAMES)
