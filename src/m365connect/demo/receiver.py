"""The demo's webhook receiver: plain HTTP on 127.0.0.1 in a thread, answering 200 to every POST and
keeping what it received, so the demo can verify each delivery's Standard Webhooks signature."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType


@dataclass(frozen=True)
class Delivery:
    """One POST as it arrived: its headers (lower-case names) and its body, untouched (the signature
    covers the exact bytes)."""

    headers: dict[str, str]
    body: bytes


class Receiver:
    """A local webhook receiver; `wait_for(n, seconds)` returns once `n` deliveries arrived (or the time
    ran out), woken by each arrival."""

    def __init__(self, path: str = "/hook") -> None:
        self.path = path
        self.deliveries: list[Delivery] = []
        self._arrived = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {name.lower(): value for name, value in self.headers.items()}
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()
                with receiver._arrived:
                    receiver.deliveries.append(Delivery(headers, body))
                    receiver._arrived.notify_all()

            def log_message(self, format: str, *args: object) -> None:  # noqa: ARG002
                return  # quiet: the demo prints what matters

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="demo receiver", daemon=True)

    @property
    def url(self) -> str:
        """Where the service is to POST."""
        return f"http://127.0.0.1:{self._server.server_address[1]}{self.path}"

    def wait_for(self, count: int, *, seconds: float) -> bool:
        """Whether `count` deliveries arrived within `seconds`."""
        with self._arrived:
            return self._arrived.wait_for(lambda: len(self.deliveries) >= count, timeout=seconds)

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
