"""The demo's service: a migrated temporary SQLite database, an API key, and uvicorn in a thread."""

from __future__ import annotations

import asyncio
import errno
import socket
import threading
import time
from types import TracebackType
from typing import Any

import uvicorn

from m365connect.accounts.service import create_api_key
from m365connect.db.engine import create_engine, create_session_factory
from m365connect.db.migrate import upgrade_to_head
from m365connect.settings import Settings

START_TIMEOUT_SECONDS = 20.0
DEMO_ACCOUNT = "demo"


async def _prepare(settings: Settings) -> str:
    engine = create_engine(settings.database_url)
    try:
        await upgrade_to_head(engine)
        async with create_session_factory(engine)() as session:
            created = await create_api_key(session, account_name=DEMO_ACCOUNT)
            await session.commit()
            return created.plaintext
    finally:
        await engine.dispose()


def prepare_database(settings: Settings) -> str:
    """Migrate the database and create an API key of the demo account; the key."""
    return asyncio.run(_prepare(settings))


class ServiceThread:
    """An ASGI app served by uvicorn on 127.0.0.1 in a thread of its own (its own event loop).

    When the port asked for is taken (typically by `m365connect serve` on 8000, started just before by
    someone following the README), any free port is taken instead: `port_was_taken` says so."""

    def __init__(self, app: Any, *, port: int, host: str = "127.0.0.1") -> None:
        self._app, self._host, self._port = app, host, port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.url = ""
        self.port_was_taken = False

    def _listen(self) -> socket.socket:
        for port in (self._port, 0):
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
            try:
                listener.bind((self._host, port))
                return listener
            except OSError as exc:
                listener.close()
                if exc.errno != errno.EADDRINUSE or port == 0:
                    raise OSError(f"cannot listen on {self._host}:{port}: {exc.strerror}") from None
                self.port_was_taken = True
        raise AssertionError("unreachable: port 0 binds or raises")

    def start(self) -> None:
        """Bind (port 0 = any free port), serve, and return once requests are accepted."""
        listener = self._listen()
        config = uvicorn.Config(
            self._app,
            log_config=None,
            log_level="warning",
            access_log=False,
            server_header=False,
            ws="none",
            timeout_graceful_shutdown=5,
        )
        self._server = server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=lambda: asyncio.run(server.serve(sockets=[listener])), name="m365connect-demo", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                listener.close()
                raise RuntimeError("the demo service did not start")
            time.sleep(0.01)
        self.url = f"http://{self._host}:{listener.getsockname()[1]}"

    def stop(self) -> None:
        """Shut down gracefully (the app's lifespan closes its engine and clients) and join the thread."""
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join()
        self._server = self._thread = None

    def __enter__(self) -> ServiceThread:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
