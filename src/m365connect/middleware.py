"""The edge of every HTTP request: request id, security headers, body size limit, last-resort 500."""

from __future__ import annotations

import logging
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from m365connect.api_errors import render
from m365connect.errors import InternalError, PayloadTooLarge

logger = logging.getLogger("m365connect.api")

_MAX_CLIENT_REQUEST_ID = 128
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
)


class _BodyTooLarge(Exception):
    """The client sent more bytes than the limit."""


class EdgeMiddleware:
    """Tags every response with X-Request-Id and security headers; refuses oversized bodies with 413;
    answers any unexpected exception with the generic 500 (never a stack trace)."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one request."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_request_id(scope) or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        started = False
        overflow = _Overflow(self.max_body_bytes)

        async def tagged_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode()),
                    *SECURITY_HEADERS,
                ]
                message = {**message, "headers": headers}
            await send(message)

        async def guarded_send(message: Message) -> None:
            # The framework turns a body that failed to arrive into its own 400: answer 413 instead.
            if overflow.exceeded:
                if not started:
                    await render(PayloadTooLarge())(scope, receive, tagged_send)
                return
            await tagged_send(message)

        if _declared_length(scope) > self.max_body_bytes:
            await render(PayloadTooLarge())(scope, receive, tagged_send)
            return
        try:
            await self.app(scope, overflow.wrap(receive), guarded_send)
        except Exception:
            if overflow.exceeded and not started:
                await render(PayloadTooLarge())(scope, receive, tagged_send)
                return
            logger.exception("request.failed", extra={"request_id": request_id})
            if started:
                raise
            await render(InternalError())(scope, receive, tagged_send)


class _Overflow:
    """Counts request body bytes; past the limit, the request fails."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.received = 0
        self.exceeded = False

    def wrap(self, receive: Receive) -> Receive:
        """A receive that raises once more than `limit` bytes arrived."""

        async def limited_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                self.received += len(message.get("body", b""))
                if self.received > self.limit:
                    self.exceeded = True
                    raise _BodyTooLarge
            return message

        return limited_receive


def _declared_length(scope: Scope) -> int:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return 0
    return 0


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            text: str = value.decode("latin-1").strip()
            if text and len(text) <= _MAX_CLIENT_REQUEST_ID and text.isprintable():
                return text
    return None
