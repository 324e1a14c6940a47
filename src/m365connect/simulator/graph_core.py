"""Transport-free Graph requests, responses, errors and injected faults, shared by plain and $batch calls."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from m365connect.simulator.directory import DirectoryTenant
from m365connect.simulator.state import SimulatorState

ODATA_JSON = (
    "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8"
)
ACCESS_DENIED = "Access is denied. Check credentials and try again."
_KEY_SEGMENT = re.compile(r"^users\('((?:[^']|'')*)'\)$", re.IGNORECASE)


@dataclass(frozen=True)
class Caller:
    """Who calls: the token's tenant, app id and application roles."""

    tenant: DirectoryTenant
    app_id: str
    roles: frozenset[str]

    def require(self, accepted: frozenset[str], error: GraphError) -> None:
        """Raise error unless the token carries one of the accepted roles."""
        if not self.roles & accepted:
            raise error


@dataclass(frozen=True)
class GraphRequest:
    """One Graph call, from HTTP or from a $batch item: path relative to /v1.0, lowercase header names."""

    method: str
    path: str
    query: tuple[tuple[str, str], ...]
    headers: Mapping[str, str]
    body: bytes
    caller: Caller
    service_root: str

    def options(self) -> dict[str, str]:
        """The $-prefixed system query options by lowercase name; a repeated option is a 400."""
        options: dict[str, str] = {}
        for name, value in self.query:
            if not name.startswith("$"):
                continue
            if name.lower() in options:
                message = (
                    f"Query option '{name}' was specified more than once, it must be specified at most once."
                )
                raise GraphError(400, "BadRequest", message)
            options[name.lower()] = value
        return options


@dataclass
class GraphResponse:
    """A Graph answer before rendering: status, JSON body (None for no body) and extra headers."""

    status: int
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)


class GraphError(Exception):
    """A Graph error: status, code, message, extra headers and extra innerError members."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
        inner: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message
        self.headers = dict(headers or {})
        self.inner = dict(inner or {})

    def to_response(self, request_id: str, client_request_id: str) -> GraphResponse:
        """Render as Graph does: {"error": {"code", "message", "innerError": {date, request-id, ...}}}."""
        inner = {
            "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
            "request-id": request_id,
            "client-request-id": client_request_id,
            **self.inner,
        }
        body = {"error": {"code": self.code, "message": self.message, "innerError": inner}}
        return GraphResponse(self.status, body, {"Content-Type": "application/json", **self.headers})


def resource_segments(path: str) -> list[str]:
    """The path's segments, with the key form `users('{upn}')` read as `users/{upn}`."""
    segments = path.strip("/").split("/")
    if key := _KEY_SEGMENT.match(segments[0]):
        return ["users", key.group(1).replace("''", "'"), *segments[1:]]
    return segments


def property_named(raw: str, names: Iterable[str]) -> str | None:
    """The canonical spelling of a property name, matched case-insensitively (None if unknown)."""
    return next((name for name in names if name.lower() == raw.lower()), None)


def member(payload: Mapping[str, Any], name: str, default: Any = None) -> Any:
    """A JSON member by property name, matched case-insensitively as Graph reads request bodies.

    The official SDKs send action parameters in PascalCase (msgraph-sdk: {"Message": ..., "SaveToSentItems":
    ...}) and model properties in camelCase; Graph accepts either spelling.
    """
    if name in payload:
        return payload[name]
    folded = name.lower()
    return next((value for key, value in payload.items() if key.lower() == folded), default)


def too_many_requests(retry_after: str) -> GraphError:
    """The throttling error of Microsoft's throttling page: 429, Retry-After and TooManyRequests body."""
    inner = {"code": "429", "message": "Please retry after", "status": "429"}
    headers = {"Retry-After": retry_after}
    return GraphError(429, "TooManyRequests", "Please retry again later.", headers=headers, inner=inner)


def service_unavailable(retry_after: str) -> GraphError:
    """An injected 503 (Graph's serviceNotAvailable), with a Retry-After as Graph's errors page allows."""
    message = (
        "The service is not available. Try the request again after a delay. "
        "There may be a Retry-After header."
    )
    return GraphError(503, "serviceNotAvailable", message, headers={"Retry-After": retry_after})


def injected_error(state: SimulatorState) -> GraphError | None:
    """The throttling or unavailability fault chosen for one request or batch item, if any."""
    faults = state.faults
    if faults.roll(faults.graph_throttle_rate):
        state.stats.throttled += 1
        return too_many_requests(faults.retry_after_header())
    if faults.roll(faults.graph_unavailable_rate):
        return service_unavailable(faults.retry_after_header())
    return None


def method_not_allowed() -> GraphError:
    """The directory's answer to an HTTP method a resource does not support."""
    message = "Specified HTTP method is not allowed for the request target."
    return GraphError(405, "Request_BadRequest", message)


def segment_not_found(segment: str) -> GraphError:
    """Graph's answer to a path segment it does not know."""
    return GraphError(400, "BadRequest", f"Resource not found for the segment '{segment}'.")
