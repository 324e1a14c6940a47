"""One webhook POST over a connection pinned to vetted addresses (docs/decisions.md, "Webhook pinning").

httpx resolves a host itself when it connects, after any check we made: a name that answered a public
address to the check and 127.0.0.1 to the connection (DNS rebinding) would reach the internal address.
So the name is resolved and vetted once (webhooks/addresses.py) and the connection goes to one of the
vetted addresses: an httpcore network backend that ignores the name it is asked for and connects to those
addresses. httpcore still sends the name as TLS SNI, checks the certificate against it and puts it in
`Host`, so the receiver sees an ordinary request to its name. httpx takes no network backend, so the
POST uses httpcore's pool directly (one pool per attempt: a pooled connection must not outlive the check
that vetted its address). Redirects are never followed: httpcore does not follow them.
"""

from __future__ import annotations

import asyncio
import ssl
import time
import typing
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import httpcore

from m365connect.webhooks.addresses import IPAddress, Target

USER_AGENT = "m365connect-webhooks/0.1"
# A receiver's answer body is not needed; reading none of it keeps a hostile one from costing memory.
_ERROR_LENGTH = 200


class PinnedBackend(httpcore.AsyncNetworkBackend):
    """Connects to the vetted addresses on the vetted port only (in order, the next when one refuses),
    whatever host httpcore names: a URL that httpcore parsed differently from our check cannot lead it
    elsewhere."""

    def __init__(
        self, addresses: Sequence[IPAddress], port: int, inner: httpcore.AsyncNetworkBackend | None = None
    ) -> None:
        if not addresses:
            raise ValueError("no vetted address")
        self._addresses = list(addresses)
        self._port = port
        self._inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,  # noqa: ARG002 - the name stays for TLS and Host; the connection ignores it on purpose
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[typing.Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """A connection to the first vetted address that accepts one."""
        if port != self._port:
            raise httpcore.ConnectError(f"port {port} is not the vetted port {self._port}")
        failure: Exception | None = None
        for address in self._addresses:
            try:
                return await self._inner.connect_tcp(
                    str(address),
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None
        raise failure

    async def connect_unix_socket(
        self,
        path: str,  # noqa: ARG002
        timeout: float | None = None,  # noqa: ARG002, ASYNC109 - httpcore's interface
        socket_options: Iterable[typing.Any] | None = None,  # noqa: ARG002
    ) -> httpcore.AsyncNetworkStream:
        """Never: a webhook goes over TCP."""
        raise httpcore.ConnectError("unix sockets are not used for webhooks")

    async def sleep(self, seconds: float) -> None:
        """As the inner backend sleeps."""
        await self._inner.sleep(seconds)


@dataclass(frozen=True)
class Outcome:
    """What one attempt got: the status (None without an answer), a short reason when it failed, and how
    long it took."""

    status_code: int | None
    error: str | None
    duration_ms: int
    sent: bool = True  # False: nothing went out (URL refused at delivery, secret unreadable)
    refused: bool = False  # the URL broke the SSRF rules at delivery

    @property
    def label(self) -> str:
        """The metric's outcome: delivered, gone, refused or failed."""
        if self.delivered:
            return "delivered"
        if self.status_code == 410:
            return "gone"
        return "refused" if self.refused else "failed"

    @property
    def delivered(self) -> bool:
        """A 2xx answer."""
        return self.status_code is not None and 200 <= self.status_code < 300


def _reason_of_status(status: int) -> str | None:
    if 200 <= status < 300:
        return None
    if 300 <= status < 400:
        return f"HTTP {status}: redirects are not followed"
    if status == 410:
        return "HTTP 410: the receiver is gone, subscription disabled"
    return f"HTTP {status}"


async def post(
    target: Target,
    addresses: Sequence[IPAddress],
    *,
    url: str,
    body: bytes,
    headers: Sequence[tuple[str, str]],
    ssl_context: ssl.SSLContext,
    seconds: float,
    backend: httpcore.AsyncNetworkBackend | None = None,
) -> Outcome:
    """POST `body` to `url` through a connection to one of `addresses`, within `seconds` in all."""
    started = time.monotonic()

    def done(status: int | None, error: str | None) -> Outcome:
        elapsed = round((time.monotonic() - started) * 1000)
        return Outcome(status_code=status, error=error and error[:_ERROR_LENGTH], duration_ms=elapsed)

    limits = {"connect": seconds, "read": seconds, "write": seconds, "pool": seconds}
    pool = httpcore.AsyncConnectionPool(
        ssl_context=ssl_context,
        network_backend=PinnedBackend(addresses, target.port, backend),
        max_connections=1,
        retries=0,
    )
    try:
        async with pool, asyncio.timeout(seconds):
            request_headers = [
                *headers,
                ("Content-Type", "application/json"),
                ("User-Agent", USER_AGENT),
            ]
            async with pool.stream(
                "POST", url, headers=request_headers, content=body, extensions={"timeout": limits}
            ) as response:
                return done(response.status, _reason_of_status(response.status))
    except TimeoutError:
        return done(None, f"no answer within {seconds:g} s")
    except (httpcore.ConnectTimeout, httpcore.ReadTimeout, httpcore.WriteTimeout, httpcore.PoolTimeout):
        return done(None, f"no answer within {seconds:g} s")
    except httpcore.ConnectError as exc:
        return done(None, f"could not connect to {target.host}: {exc or type(exc).__name__}")
    except httpcore.ProtocolError as exc:
        return done(None, f"not a valid HTTP answer: {exc or type(exc).__name__}")
    except (httpcore.NetworkError, OSError) as exc:
        return done(None, f"connection failed: {exc or type(exc).__name__}")
