"""Several httpx clients used as one: each request goes to the one with the fewest requests in flight.

Why not one client of all the connections: httpcore 1.0's pool walks every connection it holds each time a
request joins or leaves it (a quadratic walk for its keep-alive rule, and a `poll()` of every idle
socket), so its cost per request grows with its size; and its keep-alive rule counts every connection,
not only the idle ones, so a pool with more connections than `max_keepalive_connections` closes each one
that goes idle, and the next request opens a new TLS connection. Pools of 16 connections, each keeping
all of its connections alive, hold as many connections with a short walk and no churn (docs/performance.md,
"The HTTP pool's own cost"); state.py says how many.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeAlias

import httpx


class PooledClients:
    """`clients` as one HTTP client; closes them all on `aclose`."""

    def __init__(self, clients: Sequence[httpx.AsyncClient]) -> None:
        if not clients:
            raise ValueError("PooledClients needs at least one client")
        self._clients = list(clients)
        self._in_flight = [0] * len(self._clients)

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: httpx.Headers | Mapping[str, str] | None = None,
        json: Any = None,
        data: Mapping[str, Any] | None = None,
        extensions: dict[str, Any] | None = None,
    ) -> httpx.Response:
        """Send through the least busy client (the first of those tied): the pools fill evenly."""
        index = self._in_flight.index(min(self._in_flight))
        self._in_flight[index] += 1
        try:
            return await self._clients[index].request(
                method, url, headers=headers, json=json, data=data, extensions=extensions
            )
        finally:
            self._in_flight[index] -= 1

    def in_flight(self) -> list[int]:
        """Requests in flight per client, in order."""
        return list(self._in_flight)

    async def aclose(self) -> None:
        for client in self._clients:
            await client.aclose()


# What the token and Graph clients send through: tests pass a plain httpx client, the service PooledClients.
HttpRequester: TypeAlias = httpx.AsyncClient | PooledClients
