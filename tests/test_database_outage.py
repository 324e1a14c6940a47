"""PostgreSQL unreachable: 503 with Retry-After, /readyz says so, and the service recovers by itself.

The database sits behind a TCP proxy that the test cuts and restores, as a network outage would.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy.engine import make_url

from m365connect.accounts.service import create_api_key
from m365connect.app import create_app
from m365connect.crypto import generate_key
from m365connect.settings import Settings
from m365connect.state import open_state
from tests.conftest import BACKENDS
from tests.helpers import assert_generic_error, headers

pytestmark = pytest.mark.skipif("postgresql" not in BACKENDS, reason="needs the PostgreSQL backend")

POSTGRES = ("127.0.0.1", 5432)


class OutageProxy:
    """Forwards TCP to PostgreSQL until cut; listens again on the same port when restored."""

    def __init__(self) -> None:
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def restore(self) -> None:
        self._server = await asyncio.start_server(self._pipe, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        await self._server.wait_closed()
        self._writers.clear()

    async def _pipe(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        server_reader, server_writer = await asyncio.open_connection(*POSTGRES)
        self._writers.update({client_writer, server_writer})

        async def copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await reader.read(65536):
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
