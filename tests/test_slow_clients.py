"""Slow clients against a real `m365connect serve`: a request must arrive in time (issue 9, item 6)."""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from m365connect.crypto import generate_key
from m365connect.simulator import FakeMicrosoft
from tests.factories import CREDENTIALS, credential_body
from tests.helpers import headers
from tests.processes import Children
from tests.served import new_api_key, serve, service_env

HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 2.0
SOCKET_TIMEOUT = 15.0  # far above the deadlines: without them the service would never answer


@pytest.fixture
async def service(database_url: str, microsoft: FakeMicrosoft, tmp_path: Path) -> AsyncIterator[Service]:
    """A service with short deadlines, logging at INFO; its log must show no error."""
    api_key = await new_api_key(database_url, account="slow")
    env = service_env(
        database_url=database_url,
        keys=generate_key(),
        microsoft=microsoft,
        M365CONNECT_REQUEST_HEADER_TIMEOUT=str(HEADER_TIMEOUT),
        M365CONNECT_REQUEST_BODY_TIMEOUT=str(BODY_TIMEOUT),
    )
    env["M365CONNECT_LOG_LEVEL"] = "INFO"
    children = Children()
    try:
        url, log = serve(children, env=env, workdir=tmp_path, name="slow")
        yield Service(url, int(url.rsplit(":", 1)[1]), api_key, log)
    finally:
        children.stop_all()
    # A late client is an expected event, never "Exception in ASGI application" or a request.failed.
    assert '"level": "ERROR"' not in log.read_text(), log.read_text()


@dataclass(frozen=True)
class Service:
    """A running service with short deadlines."""

    url: str
    port: int
    api_key: str
    log: Path

    def timeouts(self, phase: str) -> int:
        """How many `http.request.timeout` lines of this phase the service logged."""
        entries = [json.loads(line) for line in self.log.read_text().splitlines() if line.startswith("{")]
        return sum(1 for e in entries if e.get("event") == "http.request.timeout" and e["phase"] == phase)


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT)


def _until_closed(sock: socket.socket) -> bytes:
    """Everything the service sends until it closes the connection (a timeout fails the test)."""
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def _one_response(sock: socket.socket) -> bytes:
    """One whole response (head and Content-Length body) from a kept-alive connection."""
    received = b""
    while b"\r\n\r\n" not in received:
        received += sock.recv(65536)
    head, _, body = received.partition(b"\r\n\r\n")
    length = int(re.search(rb"content-length: (\d+)", head.lower())[1])  # type: ignore[index]
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def _assert_408(answer: bytes) -> None:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 "), answer[:300]
    assert b"\r\nconnection: close" in head.lower()
    error = json.loads(body)
    assert (error["title"], error["status"], error["detail"]) == (
        "Request Timeout",
        408,
        "The request did not arrive in time",
    )


def _body_head(api_key: str, length: int) -> bytes:
    return (
        f"POST {CREDENTIALS} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
        f"content-length: {length}\r\nx-api-key: {api_key}\r\n\r\n"
    ).encode()


def test_half_a_header_line_is_answered_408_and_closed(service: Service) -> None:
    port = service.port
    for _ in range(3):  # several connections at once, each on its own deadline
        with _connect(port) as first, _connect(port) as second:
            first.sendall(b"GET /healthz HT")
            second.sendall(b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\nx-trickle: ")
            _assert_408(_until_closed(first))
            _assert_408(_until_closed(second))
    assert service.timeouts("head") == 6


def test_a_connection_that_sends_nothing_is_closed(service: Service) -> None:
    with _connect(service.port) as silent:
        assert _until_closed(silent) == b""
    assert service.timeouts("head") == 0  # nothing to report about a connection that never asked


def test_a_head_trickled_past_the_deadline_is_refused_even_after_a_served_request(service: Service) -> None:
    port, api_key = service.port, service.api_key
    with _connect(port) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
        first = _one_response(sock)
        assert first.startswith(b"HTTP/1.1 200 "), first
        # The kept-alive connection's next request: one header byte every 0.3 s never completes in time.
        sent = b""
        try:
            for byte in f"GET {CREDENTIALS} HTTP/1.1\r\nx-api-key: {api_key}\r\n".encode():
                sock.sendall(bytes([byte]))
                sent += bytes([byte])
                time.sleep(0.3)
        except OSError:
            pass  # the service closed the connection while we were still trickling
        assert len(sent) < 20  # cut off after about HEADER_TIMEOUT / 0.3 bytes
        _assert_408(_until_closed(sock))


def test_a_body_trickled_too_slowly_is_answered_408_and_closed(service: Service) -> None:
    port, api_key = service.port, service.api_key
    body = json.dumps(credential_body()).encode()
    with _connect(port) as sock:
        sock.sendall(_body_head(api_key, len(body)))
        sent = 0
        try:
            for start in range(0, len(body), 5):  # 5 bytes every 0.3 s: the body needs far longer
                sock.sendall(body[start : start + 5])
                sent += 5
                time.sleep(0.3)
        except OSError:
            pass
        assert sent < len(body)
        _assert_408(_until_closed(sock))
    assert service.timeouts("body") == 1


def test_a_normal_client_is_unaffected(service: Service) -> None:
    url, port, api_key = service.url, service.port, service.api_key
    body = json.dumps(credential_body()).encode()
    with _connect(port) as sock:
        # A head and a body that pause, but arrive within their deadlines.
        head = _body_head(api_key, len(body))
        sock.sendall(head[:20])
        time.sleep(HEADER_TIMEOUT / 2)
        sock.sendall(head[20:] + body[:10])
        time.sleep(BODY_TIMEOUT / 2)
        sock.sendall(body[10:])
        answer = _one_response(sock)
        assert answer.startswith(b"HTTP/1.1 201 "), answer[:300]
    with httpx.Client(base_url=url, timeout=SOCKET_TIMEOUT) as http:
        for _ in range(3):  # kept alive across requests spaced by more than the head deadline
            listed = http.get(CREDENTIALS, headers=headers(api_key))
            assert listed.status_code == 200
            assert len(listed.json()["credentials"]) == 1
            time.sleep(HEADER_TIMEOUT * 1.5)
    assert service.timeouts("head") == service.timeouts("body") == 0
