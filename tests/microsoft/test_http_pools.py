"""PooledClients: several httpx clients as one, the least busy first; the service's pools keep their
connections (httpcore 1.0 closes an idle one whenever a pool holds more than its keep-alive number)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from m365connect.crypto import generate_key
from m365connect.microsoft.http_pools import PooledClients
from m365connect.settings import Settings
from m365connect.state import HTTP_POOL_CONNECTIONS, HTTP_POOLS, build_http_client


class _KeepAliveServer:
    """Plain HTTP/1.1 with keep-alive: answers each request after `delay`, counts the connections."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.connections = 0
        self.requests = 0
        self.request_lines: list[str] = []
        self._server: asyncio.Server | None = None

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, backlog=512)
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                self.request_lines.append(head.decode("latin-1").split("\r\n", 1)[0])
                if self.request_lines[-1].startswith("CONNECT "):  # as a proxy: refuse the tunnel
                    writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
                    await writer.drain()
                    break
                length = 0
                for line in head.decode("latin-1").split("\r\n"):
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
                if length:
                    await reader.readexactly(length)
                self.requests += 1
                await asyncio.sleep(self.delay)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()


@pytest.fixture
async def server() -> AsyncIterator[_KeepAliveServer]:
    running = _KeepAliveServer(delay=0.05)
    yield running
    await running.stop()


def _settings() -> Settings:
    return Settings(database_url="sqlite+aiosqlite:///unused.db", encryption_keys=generate_key())


async def test_rounds_of_concurrent_requests_reuse_the_connections_of_the_first(
    server: _KeepAliveServer,
) -> None:
    """Five rounds of 48 requests in flight at once (the size at which the former single client of 64
    connections with 32 kept alive closed each connection beyond 32 as it went idle, and opened it again
    in the next round): the later rounds open no connection."""
    url = await server.start()
    pooled = build_http_client(_settings())
    try:
        opened = []
        for _ in range(5):
            answers = await asyncio.gather(*(pooled.request("GET", url + "/x") for _ in range(48)))
            assert [answer.status_code for answer in answers] == [200] * 48
            opened.append(server.connections)
        assert server.requests == 5 * 48
        assert opened[0] == 48  # 48 at once: each needed a connection of its own
        assert opened == [48] * 5, opened
    finally:
        await pooled.aclose()


async def test_the_pools_hold_their_connections_together_and_no_more(server: _KeepAliveServer) -> None:
    """300 requests at once: at most HTTP_POOLS x HTTP_POOL_CONNECTIONS connections, all of them used."""
    url = await server.start()
    pooled = build_http_client(_settings())
    try:
        answers = await asyncio.gather(*(pooled.request("GET", url + "/x") for _ in range(300)))
        assert all(answer.status_code == 200 for answer in answers)
        assert server.requests == 300
        assert server.connections == HTTP_POOLS * HTTP_POOL_CONNECTIONS == 256
    finally:
        await pooled.aclose()


async def test_every_client_goes_through_the_proxy_of_https_proxy(
    server: _KeepAliveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """operations.md promises that HTTPS_PROXY is honoured on the way to Microsoft: each of the pooled
    clients (eight requests at once: two for each, the least busy first) asks the proxy for a tunnel."""
    proxy = await server.start()
    for name in ("ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy", "HTTP_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", proxy)
    pooled = build_http_client(_settings())
    try:
        refused = await asyncio.gather(
            *(pooled.request("GET", "https://graph.microsoft.com/v1.0/users") for _ in range(8)),
            return_exceptions=True,
        )
        assert all(isinstance(answer, httpx.ProxyError) for answer in refused), refused
        assert server.request_lines == ["CONNECT graph.microsoft.com:443 HTTP/1.1"] * 8
    finally:
        await pooled.aclose()


async def test_each_request_goes_to_the_least_busy_client() -> None:
    """Requests held in flight: each new one goes to the client with the fewest, the first of a tie; a
    client whose request ended is the next one chosen (a round robin would choose c there)."""
    released = {n: asyncio.Event() for n in range(4)}
    four_in = asyncio.Event()
    served: list[str] = []

    def client(name: str) -> httpx.AsyncClient:
        async def handler(request: httpx.Request) -> httpx.Response:
            served.append(name)
            if len(served) == 4:
                four_in.set()
            if request.url.path.startswith("/hold/"):
                await released[int(request.url.path.rsplit("/", 1)[1])].wait()
            return httpx.Response(200, json={"by": name})

        return httpx.AsyncClient(transport=httpx.MockTransport(handler))

    pooled = PooledClients([client("a"), client("b"), client("c")])
    held = [asyncio.create_task(pooled.request("GET", f"http://x/hold/{n}")) for n in range(4)]
    await asyncio.wait_for(four_in.wait(), 5)
    assert served == ["a", "b", "c", "a"]
    assert pooled.in_flight() == [2, 1, 1]
    quick = await pooled.request("POST", "http://x/now", json={"k": 1})
    assert quick.json() == {"by": "b"}  # b and c tie at one in flight: the first of them
    released[1].set()  # the request b holds
    assert (await held[1]).json() == {"by": "b"}
    assert pooled.in_flight() == [2, 0, 1]
    after = await pooled.request("GET", "http://x/now")
    assert after.json() == {"by": "b"}
    for event in released.values():
        event.set()
    await asyncio.gather(*held)
    assert pooled.in_flight() == [0, 0, 0]
    await pooled.aclose()


async def test_a_failed_request_leaves_its_client_no_busier() -> None:
    async def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    pooled = PooledClients([httpx.AsyncClient(transport=httpx.MockTransport(refuse))])
    with pytest.raises(httpx.ConnectError):
        await pooled.request("GET", "http://x/")
    assert pooled.in_flight() == [0]
    await pooled.aclose()


async def test_aclose_closes_every_client_and_an_empty_list_is_refused() -> None:
    clients = [httpx.AsyncClient() for _ in range(3)]
    pooled = PooledClients(clients)
    await pooled.aclose()
    assert all(client.is_closed for client in clients)
    with pytest.raises(ValueError, match="at least one client"):
        PooledClients([])
