"""Error body schemas and response tables shared by every router's OpenAPI description.

Examples are built from the error classes themselves (title, status, default detail), so the document
shows exactly what the service answers (API.md §1).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from m365connect.codes import ErrorCode
from m365connect.errors import (
    BadRequest,
    GenericError,
    HeadersTooLarge,
    InternalError,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
    TooManyRequests,
    Unauthorized,
)

EXAMPLE_TIMESTAMP = "2026-11-21 20:00:00"
# FastAPI drops every null value from the document it builds, examples included; a documented null
# travels as this marker and openapi.py turns it back into null.
JSON_NULL = "__m365connect_json_null__"
DATABASE_UNAVAILABLE = "The database is unavailable. Nothing was saved; please retry."


class ValidationMessage(BaseModel):
    """A 422 answer: one UPPER_SNAKE code."""

    message: str = Field(examples=["INVALID_CREDENTIAL_ID"])


class GenericErrorBody(BaseModel):
    """Woodpecker's generic error body."""

    title: str = Field(examples=["Not Found"])
    status: int = Field(examples=[404])
    detail: str = Field(examples=["Requested resource does not exist"])
    timestamp: str = Field(examples=[EXAMPLE_TIMESTAMP], description="UTC, `YYYY-MM-DD HH:MM:SS`")


Responses = dict[int | str, dict[str, Any]]


def example(value: Any) -> Any:
    """`value` ready for an OpenAPI example (its nulls survive FastAPI)."""
    if value is None:
        return JSON_NULL
    if isinstance(value, dict):
        return {key: example(item) for key, item in value.items()}
    if isinstance(value, list):
        return [example(item) for item in value]
    return value


RETRY_AFTER = {
    "Retry-After": {"description": "Seconds to wait before retrying", "schema": {"type": "integer"}}
}


def error_body(error: type[GenericError], detail: str | None = None) -> dict[str, Any]:
    """The generic body `error` answers, with its documented detail unless another is given."""
    return {
        "title": error.title,
        "status": error.status,
        "detail": detail or error.default_detail,
        "timestamp": EXAMPLE_TIMESTAMP,
    }


def generic(
    error: type[GenericError], description: str, *details: str, retry_after: bool = False
) -> dict[str, Any]:
    """A response of the generic body, with one example per detail (or the default detail)."""
    bodies = [error_body(error, detail) for detail in details] or [error_body(error)]
    examples = {f"example{n}" if n else "default": {"value": body} for n, body in enumerate(bodies)}
    for example, body in zip(examples.values(), bodies, strict=True):
        example["summary"] = body["detail"]
    response: dict[str, Any] = {
        "model": GenericErrorBody,
        "description": description,
        "content": {"application/json": {"examples": examples}},
    }
    if retry_after:
        response["headers"] = RETRY_AFTER
    return response


def codes(description: str, *values: ErrorCode) -> dict[str, Any]:
    """A 422 response with one example per code."""
    examples = {str(code): {"value": {"message": str(code)}} for code in values}
    return {
        "model": ValidationMessage,
        "description": description,
        "content": {"application/json": {"examples": examples}},
    }


COMMON: Responses = {
    401: generic(Unauthorized, "Missing, unknown or revoked API key"),
    413: generic(PayloadTooLarge, "Request body larger than M365CONNECT_MAX_BODY_BYTES"),
    429: generic(TooManyRequests, "Too many requests with this API key", retry_after=True),
    500: generic(InternalError, "Unexpected error; never details"),
    503: generic(ServiceUnavailable, "The database is unreachable", DATABASE_UNAVAILABLE, retry_after=True),
}
NOT_FOUND: Responses = {404: generic(NotFound, "Unknown id, or another account's")}
MICROSOFT_UNAVAILABLE: Responses = {
    503: generic(
        ServiceUnavailable,
        "Microsoft's identity platform (or the database) did not answer; nothing was saved",
        ServiceUnavailable.default_detail,
        DATABASE_UNAVAILABLE,
        retry_after=True,
    )
}


def bad_request(description: str, *details: str) -> Responses:
    """A 400 of the generic body whose `detail` names the field."""
    return {400: generic(BadRequest, description, *details)}


def openapi_generic(error: type[GenericError], description: str) -> dict[str, Any]:
    """The same response as `generic`, already in OpenAPI form (for post-processing the document)."""
    response = generic(error, description)
    del response["model"]
    response["content"]["application/json"]["schema"] = {"$ref": "#/components/schemas/GenericErrorBody"}
    return response


HEADERS_TOO_LARGE = openapi_generic(
    HeadersTooLarge, "Request header fields larger than M365CONNECT_MAX_HEADER_BYTES"
)
RATE_LIMIT_HEADERS: dict[str, dict[str, Any]] = {
    "RateLimit-Limit": {
        "description": "Requests the API key may send at once (M365CONNECT_RATE_LIMIT_BURST)",
        "schema": {"type": "integer"},
    },
    "RateLimit-Remaining": {
        "description": "Requests the API key may still send at once",
        "schema": {"type": "integer"},
    },
    "RateLimit-Reset": {
        "description": "Seconds until the API key may send RateLimit-Limit requests at once again",
        "schema": {"type": "integer"},
    },
}
