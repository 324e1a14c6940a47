"""Values exchanged with the Graph client: requests, responses and their outcome."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NamedTuple

TokenProvider = Callable[[bool], Awaitable[str]]
"""`force_refresh -> bearer token`; its own errors propagate through the Graph client unchanged."""


class Outcome(StrEnum):
    """How a request ended, as far as retrying is concerned."""

    ANSWERED = "ANSWERED"  # a definitive answer: 2xx, or an error that retrying cannot change
    THROTTLED = "THROTTLED"  # the last answer was 429, past the retry budget
    UNAVAILABLE = "UNAVAILABLE"  # 5xx, network error, timeout or malformed JSON, past the retry budget


def outcome_of(status: int) -> Outcome:
    """The outcome of an answer with this HTTP status (0: no usable answer)."""
    if status == 429:
        return Outcome.THROTTLED
    if status == 0 or status >= 500:
        return Outcome.UNAVAILABLE
    return Outcome.ANSWERED


@dataclass(frozen=True)
class GraphRequest:
    """One Graph request; `url` is relative to /v1.0 (e.g. "/users?$filter=..."), body is JSON."""

    id: str
    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    body: Any = None


@dataclass(frozen=True)
class GraphResponse:
    """The final answer to one GraphRequest (same `id`); header names are lowercase.

    `status` is the HTTP status of the last answer, or 0 when there was no usable answer (network
    error, timeout, malformed JSON, item missing from a batch response). `body` is parsed JSON or None.
    """

    id: str
    status: int
    headers: Mapping[str, str]
    body: Any

    @property
    def ok(self) -> bool:
        """True for a 2xx answer."""
        return 200 <= self.status < 300

    @property
    def outcome(self) -> Outcome:
        """ANSWERED, THROTTLED (last answer 429) or UNAVAILABLE (0 or 5xx)."""
        return outcome_of(self.status)

    @property
    def error_code(self) -> str | None:
        """Graph's `error.code`, if the body has one."""
        return error_field(self.body, "code")

    @property
    def error_message(self) -> str | None:
        """Graph's `error.message` (never branch on it, except where Microsoft forces it)."""
        return error_field(self.body, "message")

    @property
    def request_id(self) -> str | None:
        """Graph's `request-id` response header, for support."""
        return self.headers.get("request-id")


class Reply(NamedTuple):
    """One answer before the retry decision; `unsent` means the request provably never reached Graph."""

    status: int
    headers: Mapping[str, str]
    body: Any
    unsent: bool = False

    def response(self, request_id: str) -> GraphResponse:
        """The final GraphResponse for the request with this id."""
        return GraphResponse(id=request_id, status=self.status, headers=self.headers, body=self.body)


NO_ANSWER = Reply(0, {}, None)


def error_field(body: Any, name: str) -> str | None:
    """`body["error"][name]` of a Graph error body (section 4.4 of the reference), when it is a string."""
    error = body.get("error") if isinstance(body, dict) else None
    value = error.get(name) if isinstance(error, dict) else None
    return value if isinstance(value, str) else None
