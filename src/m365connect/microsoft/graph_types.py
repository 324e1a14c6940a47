"""Values exchanged with the Graph client: requests, responses and their outcome."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from typing import Any, Literal, NamedTuple
from urllib.parse import unquote_plus, urlsplit

TokenProvider = Callable[[bool], Awaitable[str]]
"""`force_refresh -> bearer token`; its own errors propagate through the Graph client unchanged."""

Kind = Literal["directory", "outlook"]
"""The Graph budget a request draws on (microsoft/pacing.py)."""
OUTLOOK_NAVIGATIONS = frozenset(
    {
        "mailboxsettings",
        "sendmail",
        "messages",
        "mailfolders",
        "events",
        "calendar",
        "calendars",
        "contacts",
        "contactfolders",
        "outlook",
        "inferenceclassification",
    }
)
_SMALL_TOP = 20


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

    @cached_property
    def charge(self) -> tuple[Kind, int] | None:
        """`charge(method, url)`, worked out once: the pacer asks it when the request is sent and again
        when it is answered (a frozen dataclass's cached_property is kept in the instance's __dict__)."""
        return charge(self.method, self.url)


def charge(method: str, url: str) -> tuple[Kind, int] | None:
    """The budget a request draws on and, for the directory, its cost in resource units, as Microsoft's
    throttling page counts them (microsoft/pacing.py): `/users` and `/users/{key}` the identity budget,
    `GET users` 2, any other identity path 1, `$select` -1, `$expand` +1, `$top` under 20 -1, never
    below 1; a mailbox resource under `/users/{key}/` Outlook."""
    parts = urlsplit(url)
    segments = [s for s in parts.path.split("/") if s]
    if not segments:
        return None
    head = segments[0].split("(")[0].lower()
    if head != "users":
        return None
    if len(segments) == 1 and "(" in segments[0]:
        segments = ["users", segments[0]]  # /users('upn') addresses one user
    if len(segments) <= 2:
        query = _parameters(parts.query)
        listing = len(segments) == 1
        cost = 2 if listing and method.upper() == "GET" else 1
        cost -= "$select" in query
        cost += "$expand" in query
        top = unquote_plus(query.get("$top", "")).strip()
        cost -= top.isdigit() and int(top) < _SMALL_TOP
        return "directory", max(1, cost)
    if segments[2].lower() in OUTLOOK_NAVIGATIONS:
        return "outlook", 0
    return None


def _parameters(query: str) -> dict[str, str]:
    """A query's parameters by decoded, lowercased name, their values left encoded (as parse_qsl
    splits them, without decoding a long `$filter` that only its name matters for)."""
    found: dict[str, str] = {}
    for part in query.split("&"):
        if part:
            name, _, value = part.partition("=")
            found[unquote_plus(name).lower()] = value
    return found


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
