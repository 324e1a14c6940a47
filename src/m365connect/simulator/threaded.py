"""An ASGI app served by uvicorn in a thread of its own (its own event loop), for the simulator and the demo.

The listening socket is bound by `bind` before uvicorn starts, so a port of 0 is resolved (and a port in use
is reported with its address) before anything runs.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import Any

import uvicorn

START_TIMEOUT_SECONDS = 20.0
# How long `stop` lets uvicorn close connections itself. Closing an idle keep-alive TLS connection waits for
# the client's close_notify, which a client that keeps the connection pooled and unread never sends
# (azure-identity after a failed token request does): uvicorn would wait its graceful timeout, stop, and
# leave those sockets open. After this grace the remaining connections are aborted.
STOP_GRACE_SECONDS = 1.0


def bind(host: str, port: int, *, what: str = "HTTP") -> socket.socket:
    """A TCP socket bound to host:port (0: any free port); a port in use names its address."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto must be IPPROTO_TCP (not 0): asyncio sets TCP_NODELAY on accepted sockets only then, and
    # without it every response waits ~40 ms for the client's delayed ACK.
    listener = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
    except OSError as exc:
        listener.close()
        # Same errno, with the address: "Address already in use" alone does not say which port.
        raise OSError(exc.errno, f"cannot listen on {host}:{port} ({what}): {exc.strerror}") from None
    return listener


class ThreadedServer:
    """uvicorn serving `app` on `listener` in a daemon thread; `start` returns once requests are accepted,
    `stop` shuts down gracefully (the app's lifespan runs its exit) and joins the thread."""

    def __init__(self, app: Any, listener: socket.socket, *, name: str, **config: Any) -> None:
        self._listener = listener
        self._name = name
        self._server = uvicorn.Server(
            uvicorn.Config(
                app,
                log_config=None,
                log_level="warning",
                access_log=False,
                server_header=False,
                ws="none",
                timeout_graceful_shutdown=5,
                **config,
            )
        )
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def port(self) -> int:
        """The port the listener is bound to."""
        port: int = self._listener.getsockname()[1]
        return port

    def start(self, *, timeout: float = START_TIMEOUT_SECONDS) -> None:
        """Serve, and return once the server accepts requests (RuntimeError if it does not in time)."""
        server, listener = self._server, self._listener

        async def serve() -> None:
            self._loop = asyncio.get_running_loop()
            await server.serve(sockets=[listener])

        self._thread = thread = threading.Thread(
            target=lambda: asyncio.run(serve()), name=self._name, daemon=True
        )
        thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                listener.close()
                raise RuntimeError(f"{self._name} did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        """Ask uvicorn to exit and wait for its thread; idempotent."""
        if self._thread is not None:
            self._server.should_exit = True
            self._thread.join(STOP_GRACE_SECONDS)
            if self._thread.is_alive() and self._loop is not None:
                self._loop.call_soon_threadsafe(self._abort_connections)
            self._thread.join()
            self._thread = None

    def _abort_connections(self) -> None:
        """Drop every connection still open (runs on the server's loop): no close_notify is awaited."""
        for protocol in list(self._server.server_state.connections):
            transport = getattr(protocol, "transport", None)
            if isinstance(transport, asyncio.Transport):
                transport.abort()
