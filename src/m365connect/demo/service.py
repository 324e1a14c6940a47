"""The demo's service: a migrated temporary SQLite database, an API key, and uvicorn in a thread."""

from __future__ import annotations

import asyncio
import errno
import socket
from types import TracebackType
from typing import Any

from m365connect.accounts.service import create_api_key
from m365connect.db.engine import create_engine, create_session_factory
from m365connect.db.migrate import upgrade_to_head
from m365connect.settings import Settings
from m365connect.simulator.threaded import ThreadedServer, bind

DEMO_ACCOUNT = "demo"
# A second account for "today's tenant", whose mailboxes the first account's credentials already hold.
TODAY_ACCOUNT = "today"


async def _prepare(settings: Settings, accounts: tuple[str, ...]) -> list[str]:
    engine = create_engine(settings.database_url)
    try:
        await upgrade_to_head(engine)
        keys = []
        async with create_session_factory(engine)() as session:
            for account in accounts:
                keys.append((await create_api_key(session, account_name=account)).plaintext)
            await session.commit()
        return keys
    finally:
        await engine.dispose()


def prepare_database(settings: Settings, accounts: tuple[str, ...] = (DEMO_ACCOUNT,)) -> list[str]:
    """Migrate the database and create an API key for each account; the keys, in order."""
    return asyncio.run(_prepare(settings, accounts))


class ServiceThread:
    """An ASGI app served by uvicorn on 127.0.0.1 in a thread of its own (its own event loop).

    When the port asked for is taken (typically by `m365connect serve` on 8000, started just before by
    someone following the README), any free port is taken instead: `port_was_taken` says so."""

    def __init__(self, app: Any, *, port: int, host: str = "127.0.0.1") -> None:
        self._app, self._host, self._port = app, host, port
        self._server: ThreadedServer | None = None
        self.url = ""
        self.port_was_taken = False

    def _listen(self) -> socket.socket:
        try:
            return bind(self._host, self._port)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE or self._port == 0:
                raise
        self.port_was_taken = True
        return bind(self._host, 0)

    def start(self) -> None:
        """Bind (port 0 = any free port), serve, and return once requests are accepted."""
        self._server = ThreadedServer(self._app, self._listen(), name="the demo service")
        self._server.start()
        self.url = f"http://{self._host}:{self._server.port}"

    def stop(self) -> None:
        """Shut down gracefully (the app's lifespan closes its engine and clients) and join the thread."""
        if self._server is not None:
            self._server.stop()
        self._server = None

    def __enter__(self) -> ServiceThread:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
