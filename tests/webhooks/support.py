"""Test parts for webhooks: a local receiver that answers as scripted, a resolver whose answers the test
sets (and changes: DNS rebinding), and an enqueue that keeps a job only when its transaction commits."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import ssl
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession

from m365connect.app import create_app
from m365connect.settings import Settings
from m365connect.state import AppState
from m365connect.webhooks.addresses import IPAddress
from m365connect.work.ports import Payload

TEST_TIMEOUT = 0.5  # the contract's 10 s, shortened so that a receiver that hangs costs half a second


@contextlib.asynccontextmanager
async def api_over(settings: Settings, state: AppState) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of the API built over this state (the real ASGI stack)."""
    transport = httpx.ASGITransport(app=create_app(settings, state=state), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://m365connect.test") as http:
        yield http


def with_webhooks(state: AppState, **changes: Any) -> AppState:
    """The state with its webhook services changed."""
    return dataclasses.replace(state, webhooks=dataclasses.replace(state.webhooks, **changes))


@dataclass
class Received:
    """One request as the receiver read it."""

    method: str
    target: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """An HTTP/1.1 server on 127.0.0.1 answering each request with the next scripted answer (then 200).

    An answer is a status code, ("hang",) (no answer until the test ends: a timeout), or
    ("redirect", location) (a 302).
    """

    script: deque[Any] = field(default_factory=deque)
    received: list[Received] = field(default_factory=list)
    port: int = 0
    _release: asyncio.Event = field(default_factory=asyncio.Event)
    _arrived: asyncio.Condition = field(default_factory=asyncio.Condition)

    def url(self, path: str = "/hook", *, host: str = "127.0.0.1", scheme: str = "http") -> str:
        """The receiver's URL under this host name."""
        return f"{scheme}://{host}:{self.port}{path}"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Read one request, record it, answer as scripted."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            writer.close()
            return
        lines = head.decode("latin-1").split("\r\n")
        method, target, _version = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        async with self._arrived:
            self.received.append(Received(method, target, headers, body))
            self._arrived.notify_all()
        answer = self.script.popleft() if self.script else 200
        if answer == ("hang",):
            await self._release.wait()
            writer.close()
            return
        if isinstance(answer, tuple) and answer[0] == "redirect":
            status, extra = 302, f"Location: {answer[1]}\r\n"
        else:
            status, extra = int(answer), ""
        writer.write(
            f"HTTP/1.1 {status} X\r\n{extra}Content-Length: 2\r\nConnection: close\r\n\r\nok".encode()
        )
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()

    async def wait_for(self, count: int, *, seconds: float = 20) -> None:
        """Until `count` requests arrived (woken by each arrival, no polling)."""
        async with asyncio.timeout(seconds), self._arrived:
            await self._arrived.wait_for(lambda: len(self.received) >= count)

    def release(self) -> None:
        """End every hanging answer."""
        self._release.set()


@contextlib.asynccontextmanager
async def receiving(*, tls: ssl.SSLContext | None = None) -> AsyncIterator[Receiver]:
    """A running receiver (TLS with `tls`), stopped afterwards."""
    receiver = Receiver()
    server = await asyncio.start_server(receiver.handle, "127.0.0.1", 0, ssl=tls)
    receiver.port = server.sockets[0].getsockname()[1]
    try:
        yield receiver
    finally:
        receiver.release()
        server.close()
        await server.wait_closed()


class FakeResolver:
    """Answers what the test put in `answers` (host -> addresses); a list of answers is used in turn, the
    last one repeating (a name that rebinds)."""

    def __init__(self, answers: dict[str, list[list[str]]] | None = None) -> None:
        self.answers = answers or {}
        self.asked: list[str] = []

    def set(self, host: str, *turns: list[str]) -> None:
        """The answers `host` gets, one per lookup (the last repeats)."""
        self.answers[host] = list(turns)

    async def resolve(self, host: str) -> list[IPAddress]:
        """The next answer for `host` ([] when none was set)."""
        self.asked.append(host)
        turns = self.answers.get(host)
        if not turns:
            return []
        current = turns.pop(0) if len(turns) > 1 else turns[0]
        return [ipaddress.ip_address(text) for text in current]


@dataclass(frozen=True)
class Job:
    """One enqueued job."""

    kind: str
    payload: dict[str, Any]
    dedupe_key: str | None


class TransactionalEnqueue:
    """The Enqueue contract as a fake: a job is kept when the caller's transaction commits, dropped when
    it rolls back; a dedupe key already kept makes the call a no-op (as while its job still waits)."""

    def __init__(self) -> None:
        self.jobs: list[Job] = []
        self.committed: list[Job] = []  # every job of a committed transaction, duplicates included
        self._pending: dict[int, list[Job]] = {}

    async def __call__(
        self,
        session: AsyncSession,
        kind: str,
        payload: Payload,
        *,
        delay: float = 0.0,  # noqa: ARG002
        dedupe_key: str | None = None,
    ) -> None:
        """Add a job to the session's transaction."""
        sync = session.sync_session
        key = id(sync)
        if key not in self._pending:
            self._pending[key] = []
            event.listen(sync, "after_commit", lambda _s: self._settle(key, keep=True), once=True)
            event.listen(sync, "after_rollback", lambda _s: self._settle(key, keep=False), once=True)
        self._pending[key].append(Job(kind, dict(payload), dedupe_key))

    def _settle(self, key: int, *, keep: bool) -> None:
        jobs = self._pending.pop(key, [])
        if keep:
            self.committed.extend(jobs)
            kept = {job.dedupe_key for job in self.jobs}
            self.jobs.extend(job for job in jobs if job.dedupe_key is None or job.dedupe_key not in kept)
