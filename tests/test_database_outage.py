"""PostgreSQL unreachable: 503 with Retry-After, /readyz says so, and the service recovers by itself.

The database sits behind a TCP proxy that the test cuts and restores, as a network outage would.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from m365connect.accounts.service import create_api_key
from m365connect.app import create_app
from m365connect.crypto import generate_key
from m365connect.settings import Settings
from m365connect.state import AppState, open_state
from tests.conftest import BACKENDS
from tests.helpers import assert_generic_error, headers

pytestmark = pytest.mark.skipif("postgresql" not in BACKENDS, reason="needs the PostgreSQL backend")

POSTGRES = ("127.0.0.1", 5432)


class OutageProxy:
    """Forwards TCP to PostgreSQL until cut (connections refused) or black-holed (accepted, then silent).

    A black hole is what a silent network partition looks like from the service: connections open, bytes
    go out, nothing comes back. Nothing is lost either: when the path is restored, what was held flows on,
    as TCP's retransmissions would deliver it after a partition heals.
    """

    def __init__(self) -> None:
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()

    async def restore(self) -> None:
        """Forward again (idempotent): listen if cut, let what was held flow if black-holed."""
        self._flowing.set()
        if self._server is None or not self._server.is_serving():
            self._server = await asyncio.start_server(self._pipe, "127.0.0.1", self.port)
            self.port = self._server.sockets[0].getsockname()[1]

    def black_hole(self) -> None:
        self._flowing.clear()

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        await self._server.wait_closed()
        self._writers.clear()

    async def _pipe(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        self._writers.add(client_writer)
        await self._flowing.wait()  # a connection accepted during the black hole reaches nothing until then
        server_reader, server_writer = await asyncio.open_connection(*POSTGRES)
        self._writers.add(server_writer)

        async def copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await reader.read(65536):
                    await self._flowing.wait()  # held, not dropped, while the path is silent
                    writer.write(data)
                    await writer.drain()
            writer.close()

        await asyncio.gather(copy(client_reader, server_writer), copy(server_reader, client_writer))


@pytest.fixture
async def proxy() -> AsyncIterator[OutageProxy]:
    running = OutageProxy()
    await running.restore()
    yield running
    with contextlib.suppress(AssertionError):
        await running.cut()


async def test_database_outage_is_503_and_heals(proxy: OutageProxy, postgres_url: str) -> None:
    settings = Settings(
        database_url=make_url(postgres_url).set(port=proxy.port).render_as_string(hide_password=False),
        encryption_keys=generate_key(),
    )
    async with open_state(settings) as state:
        async with state.sessions() as session:
            key = (await create_api_key(session, account_name="outage")).plaintext
            await session.commit()
        transport = httpx.ASGITransport(app=create_app(settings, state=state), raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            url = "/rest/v2/mailboxes/microsoft/credentials"
            assert (await http.get(url, headers=headers(key))).status_code == 200

            await proxy.cut()
            down = await http.get(url, headers=headers(key))
            assert_generic_error(down, status=503, title="Service Unavailable")
            assert down.headers["retry-after"] == "5"
            ready = await http.get("/readyz")
            assert ready.status_code == 503
            assert ready.json() == {
                "status": "unavailable",
                "database": "unreachable",
                "configuration": "unknown",
            }

            await proxy.restore()
            assert (await http.get(url, headers=headers(key))).status_code == 200
            assert (await http.get("/readyz")).status_code == 200


def _settings(postgres_url: str, *, port: int, **overrides: float) -> Settings:
    url = make_url(postgres_url).set(port=port).render_as_string(hide_password=False)
    return Settings(database_url=url, encryption_keys=generate_key(), **overrides)


async def _answer_within(seconds: float, http: httpx.AsyncClient, path: str, key: str) -> httpx.Response:
    """The answer, or a failure if none comes in time (before the timeouts, these hung for minutes)."""
    async with asyncio.timeout(seconds):
        return await http.get(path, headers=headers(key))


async def test_silent_database_is_503_within_seconds_and_heals(proxy: OutageProxy, postgres_url: str) -> None:
    # The default connect and statement bounds (5 s each, docs/configuration.md). Readiness 1 s, so that a
    # probe waiting for its abandoned check to wind down (5 s) cannot pass for a fast one; pool 1 s, so
    # that a request that waited for a pooled connection and then connects itself (pool + connect) fits.
    settings = _settings(postgres_url, port=proxy.port, readiness_timeout=1.0, database_pool_timeout=1.0)
    async with open_state(settings) as state:
        async with state.sessions() as session:
            key = (await create_api_key(session, account_name="partition")).plaintext
            await session.commit()
        try:
            await _partition_and_heal(proxy, settings, state, key)
        finally:
            await proxy.restore()  # a failure must not leave the pool silent: disposing it would hang


async def _partition_and_heal(proxy: OutageProxy, settings: Settings, state: AppState, key: str) -> None:
    """The black hole, then healing, as seen through the real ASGI stack."""
    transport = httpx.ASGITransport(app=create_app(settings, state=state), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        url = "/rest/v2/mailboxes/microsoft/credentials"
        assert (await http.get(url, headers=headers(key))).status_code == 200

        proxy.black_hole()  # the pooled connection goes silent, and so does every new one
        for _ in range(2):
            ready = await _answer_within(3, http, "/readyz", key)
            assert (ready.status_code, ready.headers["retry-after"]) == (503, "5")
            assert ready.json()["database"] == "unreachable"
            down = await _answer_within(8, http, url, key)
            assert_generic_error(down, status=503, title="Service Unavailable")
            assert down.headers["retry-after"] == "5"
        # More requests than the pool has connections (5 + 10): those left waiting for one are
        # bounded too (M365CONNECT_DATABASE_POOL_TIMEOUT), not by SQLAlchemy's 30 s.
        crowd = await asyncio.gather(*(_answer_within(8, http, url, key) for _ in range(20)))
        assert {(answer.status_code, answer.headers["retry-after"]) for answer in crowd} == {(503, "5")}

        await proxy.restore()  # what was held flows on; the service must not stay stuck on it
        healed = await asyncio.gather(*(_answer_within(8, http, url, key) for _ in range(8)))
        assert [answer.status_code for answer in healed] == [200] * 8
        for _ in range(3):
            assert (await _answer_within(8, http, "/readyz", key)).status_code == 200
            assert (await _answer_within(8, http, url, key)).status_code == 200


async def test_statement_past_its_timeout_is_503(proxy: OutageProxy, postgres_url: str) -> None:
    settings = _settings(postgres_url, port=proxy.port, database_statement_timeout=0.5)
    async with open_state(settings) as state:
        async with state.sessions() as session:
            key = (await create_api_key(session, account_name="slow")).plaintext
            await session.commit()
        transport = httpx.ASGITransport(app=create_app(settings, state=state), raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            url = "/rest/v2/mailboxes/microsoft/credentials"
            async with state.engine.connect() as blocker:  # a live database, but a table held by someone
                await blocker.execute(text("LOCK TABLE graph_credentials IN ACCESS EXCLUSIVE MODE"))
                down = await _answer_within(8, http, url, key)
                await blocker.rollback()
            assert_generic_error(down, status=503, title="Service Unavailable")
            assert down.headers["retry-after"] == "5"
            assert (await http.get(url, headers=headers(key))).status_code == 200
