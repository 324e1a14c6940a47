"""The uvicorn server behind `m365connect serve`: its Config, and deadlines for a request to arrive.

uvicorn closes an idle kept-alive connection (`timeout_keep_alive`) but sets no deadline on a request
that is arriving: a client that sends half a header line, or trickles its body a byte at a time, holds
its connection (and, for a body, a running request) for as long as it likes. `DeadlineH11Protocol` adds
two deadlines to uvicorn's own h11 protocol, following h11's view of the peer's state:

- the request head (request line and headers) must be complete within `request_header_timeout` seconds
  of its first byte (of the connection, for the first request);
- the body must be complete within `request_body_timeout` seconds of the end of the head.

A request that misses its deadline is answered 408 in the generic error body with `Connection: close`
(when no response has started yet) and the connection is closed; a connection that never sent a byte is
just closed. The protocol is pinned to h11 (uvicorn's `auto` picks httptools when it is installed).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

import h11
import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.protocols.http.h11_impl import H11Protocol

from m365connect.errors import RequestTimeout
from m365connect.settings import Settings

logger = logging.getLogger("m365connect.server")


class DeadlineH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with deadlines for the request head and body (seconds, class attributes)."""

    header_timeout: float = 10.0
    body_timeout: float = 30.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._awaiting_body = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start the head deadline: a connection that sends nothing is not kept either."""
        super().connection_made(transport)
        self._arm(self.header_timeout, awaiting_body=False)

    def data_received(self, data: bytes) -> None:
        """Follow the peer's state: first bytes of a head, end of a head, end of a body."""
        if self._deadline is None and self.conn.their_state is h11.IDLE:
            self._arm(self.header_timeout, awaiting_body=False)  # a next request on a kept-alive connection
        super().data_received(data)
        state = self.conn.their_state
        if state is h11.SEND_BODY:
            if not self._awaiting_body:
                self._arm(self.body_timeout, awaiting_body=True)
        elif state is not h11.IDLE:
            self._disarm()  # the request arrived whole (DONE), or the connection is over

    def connection_lost(self, exc: Exception | None) -> None:
        """No deadline outlives its connection."""
        self._disarm()
        super().connection_lost(exc)

    def _arm(self, seconds: float, *, awaiting_body: bool) -> None:
        self._disarm()
        self._awaiting_body = awaiting_body
        self._deadline = self.loop.call_later(seconds, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._awaiting_body = False

    def _expired(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        cycle = self.cycle if self._awaiting_body else None
        if cycle is not None:
            # The app waits for a body that is not coming: it gets a disconnect, its answer goes nowhere.
            answered = cycle.response_started
            cycle.disconnected = True
            cycle.message_event.set()
            if not answered:
                self.transport.write(_timeout_response())
            self._log_timeout("body")
        elif self.conn.trailing_data[0]:  # part of a head arrived; the request was never handed to the app
            self.transport.write(_timeout_response())
            self._log_timeout("head")
        self.transport.close()  # a connection that sent nothing is closed without a word (nor a log line)

    def _log_timeout(self, phase: str) -> None:
        # INFO: one slow client is expected; many lines from one address are an attack worth seeing.
        client = self.client[0] if self.client else None
        logger.info("http.request.timeout", extra={"phase": phase, "client": client})


def _timeout_response() -> bytes:
    """The 408 as raw bytes: the request never arrived whole, so h11 has no request to answer."""
    error = RequestTimeout()
    body = json.dumps(error.body(), separators=(",", ":")).encode()
    head = (
        f"HTTP/1.1 {error.status} Request Timeout\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\ncache-control: no-store\r\n"
        "x-content-type-options: nosniff\r\n\r\n"
    )
    return head.encode() + body


def deadline_protocol(settings: Settings) -> type[DeadlineH11Protocol]:
    """The protocol class with this service's deadlines (uvicorn instantiates it per connection)."""
    return type(
        "ConfiguredDeadlineH11Protocol",
        (DeadlineH11Protocol,),
        {"header_timeout": settings.request_header_timeout, "body_timeout": settings.request_body_timeout},
    )


def build_config(
    app: Any, settings: Settings, *, host: str, port: int, proxy_headers: bool, forwarded_allow_ips: str
) -> uvicorn.Config:
    """The uvicorn Config of `m365connect serve`."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=deadline_protocol(settings),
        server_header=False,
        proxy_headers=proxy_headers,
        forwarded_allow_ips=forwarded_allow_ips,
        log_config=None,  # configure_logging: one format for every logger
        log_level=settings.log_level.lower(),
        access_log=False,  # replaced by our http.request line
        # uvicorn's HTTP/1.1 parser refuses a request head over 16 KiB with a bare 400 before the app sees
        # it: leave room above M365CONNECT_MAX_HEADER_BYTES (plus the request line) for our own 431.
        h11_max_incomplete_event_size=settings.max_header_bytes + 16 * 1024,
    )


def run(config: uvicorn.Config) -> None:
    """Serve until stopped; exit with uvicorn's STARTUP_FAILURE (3) when the server could not start (a port
    in use), as `uvicorn.run` does."""
    server = uvicorn.Server(config)
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    if not server.started:
        raise SystemExit(STARTUP_FAILURE)
