"""The edge of every HTTP request: request id, security and rate-limit headers, header, body size and JSON
nesting limits, last-resort 500."""

from __future__ import annotations

import logging
import re
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from m365connect.api.error_handlers import JsonTooDeep, render
from m365connect.api.prefer import prefers_respond_async
from m365connect.errors import HeadersTooLarge, InternalError, PayloadTooLarge
from m365connect.settings import Settings
from m365connect.state import AppState

logger = logging.getLogger("m365connect.api")

_MAX_CLIENT_REQUEST_ID = 128
JOB_START_PATH = "/rest/v2/mailboxes/microsoft/bulk"
# The console's CSV upload becomes a job: it has the job's limit, and a declared length over it is left to
# the console, which answers with its form and the reason (the body is still cut off past the limit).
CONSOLE_IMPORT_PATH = "/console/import"
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
)
RATE_LIMIT_HEADERS = "rate_limit_headers"  # request.state key: headers the rate limiter wants on the response
_DEFAULTS = Settings.model_fields
_JSON_SPECIAL = re.compile(rb'[\[\]{}"\\]')


class _BodyTooLarge(Exception):
    """The client sent more bytes than the limit."""


class EdgeMiddleware:
    """Tags every response with X-Request-Id, security and RateLimit-* headers; refuses oversized header
    fields with 431, oversized bodies with 413 and too deeply nested JSON with 400; answers any unexpected
    exception with the generic 500 (never a stack trace).

    The header and nesting limits are read from the running service's settings (the app state), so they
    follow M365CONNECT_MAX_HEADER_BYTES / M365CONNECT_MAX_JSON_DEPTH without extra wiring.
    """

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, max_job_body_bytes: int | None = None) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        # POST /bulk with `Prefer: respond-async` takes up to M365CONNECT_MAX_ACCOUNTS_PER_JOB items: 100,000
        # items are 5 to 9 MB of JSON, so that one request has a limit of its own (the others keep theirs).
        self.max_job_body_bytes = max(max_job_body_bytes or max_body_bytes, max_body_bytes)

    def _body_limit(self, scope: Scope) -> int:
        if _is_console_import(scope):
            return self.max_job_body_bytes
        if scope.get("method") == "POST" and scope.get("path") == JOB_START_PATH:
            prefer = [
                value.decode("latin-1") for name, value in scope.get("headers", []) if name == b"prefer"
            ]
            if prefers_respond_async(prefer):
                return self.max_job_body_bytes
        return self.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one request."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_request_id(scope) or uuid.uuid4().hex
        request_state = scope.setdefault("state", {})
        request_state["request_id"] = request_id
        max_header_bytes, max_json_depth = _limits(scope)
        started = False
        # A form body (the console's) is not JSON: its bytes (an uploaded PFX file) are not scanned for
        # nesting, and no JSON parser reads it (the API's routes refuse a form body before parsing).
        depth = None if _is_form(scope) else JsonDepthScan(max_json_depth)
        max_body_bytes = self._body_limit(scope)
        overflow = _Overflow(max_body_bytes, depth)

        async def tagged_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode()),
                    *SECURITY_HEADERS,
                    *_encoded(request_state.get(RATE_LIMIT_HEADERS)),
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

        if header_bytes(scope) > max_header_bytes:
            await render(HeadersTooLarge())(scope, receive, tagged_send)
            return
        if _declared_length(scope) > max_body_bytes and not _is_console_import(scope):
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


def _is_console_import(scope: Scope) -> bool:
    return scope.get("method") == "POST" and scope.get("path") == CONSOLE_IMPORT_PATH


class _Overflow:
    """Counts request body bytes and scans their nesting; past a limit, the request fails."""

    def __init__(self, limit: int, depth: JsonDepthScan | None) -> None:
        self.limit = limit
        self.depth = depth
        self.received = 0
        self.exceeded = False

    def wrap(self, receive: Receive) -> Receive:
        """A receive that raises once more than `limit` bytes arrived, or the JSON nests too deep."""

        async def limited_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                chunk = message.get("body", b"")
                self.received += len(chunk)
                if self.received > self.limit:
                    self.exceeded = True
                    raise _BodyTooLarge
                if self.depth is not None and not self.depth.feed(chunk):
                    raise JsonTooDeep(self.depth.limit)
            return message

        return limited_receive


class JsonDepthScan:
    """Streaming bracket-depth count of a JSON text, chunk by chunk; brackets inside strings do not count.

    Only `[ ] { } " \\` are looked at (one regular-expression pass per chunk), so the cost is a small
    fraction of parsing. Invalid JSON is not judged here: the parser refuses it later.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.depth = 0
        self.deepest = 0
        self._in_string = False
        self._skip_first = False  # the chunk before ended with a backslash inside a string

    def feed(self, chunk: bytes) -> bool:
        """Scan the next chunk; False once the nesting went deeper than the limit."""
        start = 0
        if self._skip_first and chunk:
            start, self._skip_first = 1, False
        escaped_at = -1
        for match in _JSON_SPECIAL.finditer(chunk, start):
            at, char = match.start(), match.group()
            if self._in_string:
                if at == escaped_at:
                    continue
                if char == b"\\":
                    escaped_at = at + 1
                    self._skip_first = escaped_at == len(chunk)
                elif char == b'"':
                    self._in_string = False
            elif char == b'"':
                self._in_string = True
            elif char in (b"[", b"{"):
                self.depth += 1
                self.deepest = max(self.deepest, self.depth)
                if self.depth > self.limit:
                    return False
            elif char in (b"]", b"}"):
                self.depth = max(0, self.depth - 1)
        return self.deepest <= self.limit


def header_bytes(scope: Scope) -> int:
    """The request's header fields as sent: `name: value` plus CRLF for each."""
    return sum(len(name) + len(value) + 4 for name, value in scope.get("headers", []))


def _limits(scope: Scope) -> tuple[int, int]:
    app = scope.get("app")
    state = getattr(getattr(app, "state", None), "m365connect", None)
    if isinstance(state, AppState):
        return state.settings.max_header_bytes, state.settings.max_json_depth
    return int(_DEFAULTS["max_header_bytes"].default), int(_DEFAULTS["max_json_depth"].default)


def _encoded(headers: dict[str, str] | None) -> list[tuple[bytes, bytes]]:
    return [(name.lower().encode(), value.encode()) for name, value in (headers or {}).items()]


def _declared_length(scope: Scope) -> int:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return 0
    return 0


_FORM_TYPES = (b"multipart/form-data", b"application/x-www-form-urlencoded")


def _is_form(scope: Scope) -> bool:
    for name, value in scope.get("headers", []):
        if name == b"content-type":
            return value.split(b";")[0].strip().lower() in _FORM_TYPES
    return False


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            text: str = value.decode("latin-1").strip()
            if text and len(text) <= _MAX_CLIENT_REQUEST_ID and text.isprintable():
                return text
    return None
