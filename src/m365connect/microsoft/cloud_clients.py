"""The token and Graph clients of every national cloud, chosen by a credential's cloud."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from m365connect.microsoft.clouds import CLOUD_NAMES, CloudEndpoints
from m365connect.microsoft.graph import GraphClient
from m365connect.microsoft.token import TokenClient


@dataclass(frozen=True)
class CloudClients:
    """The token and Graph clients of one cloud."""

    endpoints: CloudEndpoints
    tokens: TokenClient
    graph: GraphClient


class Clouds:
    """Maps a cloud's name to its clients (built once at start-up, one pair per cloud)."""

    def __init__(self, clients: Mapping[str, CloudClients]) -> None:
        missing = set(CLOUD_NAMES) - set(clients)
        if missing:
            raise ValueError(f"no clients for cloud(s) {', '.join(sorted(missing))}")
        self._clients = dict(clients)

    def tokens(self, cloud: str) -> TokenClient:
        """The token client of `cloud` (its login URL, its Graph scope)."""
        return self._clients[cloud].tokens

    def graph(self, cloud: str) -> GraphClient:
        """The Graph client of `cloud`."""
        return self._clients[cloud].graph

    def endpoints(self, cloud: str) -> CloudEndpoints:
        """Where `cloud` answers."""
        return self._clients[cloud].endpoints

    def clear_tokens(self) -> None:
        """Drop every cached token of every cloud."""
        for clients in self._clients.values():
            clients.tokens.clear()
