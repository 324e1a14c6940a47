"""The national clouds the simulator serves: each at its own path prefix, with its own Graph resource.

The global cloud answers at the root, another cloud under `/clouds/<name>` (point that cloud's login and
Graph URLs there). Entra issues a token only for the resource of the cloud asked (the `aud` claim is the
resource URI as requested, or Graph's app id), and a tenant exists in one cloud only.
"""

from __future__ import annotations

from typing import Literal, get_args

CloudName = Literal["global", "usgov", "usgov-dod", "china"]
GLOBAL = "global"
CLOUDS: tuple[str, ...] = get_args(CloudName)
GRAPH_RESOURCES = {
    "global": "https://graph.microsoft.com",
    "usgov": "https://graph.microsoft.us",
    "usgov-dod": "https://dod-graph.microsoft.us",
    "china": "https://microsoftgraph.chinacloudapi.cn",
}
# What the v2.0 discovery document says of each cloud (cloud_instance_name, msgraph_host), as Entra does.
INSTANCE_NAMES = {
    "global": ("microsoftonline.com", "graph.microsoft.com"),
    "usgov": ("microsoftonline.us", "graph.microsoft.us"),
    "usgov-dod": ("microsoftonline.us", "dod-graph.microsoft.us"),
    "china": ("partner.microsoftonline.cn", "microsoftgraph.chinacloudapi.cn"),
}
# Microsoft Graph's application id: the same first-party app in every cloud.
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"


def path_prefix(cloud: str) -> str:
    """Where the simulator serves `cloud` ("" for the global cloud)."""
    return "" if cloud == GLOBAL else f"/clouds/{cloud}"


def audiences(cloud: str) -> frozenset[str]:
    """The `aud` values Graph of `cloud` accepts."""
    resource = GRAPH_RESOURCES[cloud]
    return frozenset({resource, f"{resource}/", GRAPH_APP_ID})
