"""The OpenAPI document, corrected where FastAPI's defaults differ from what the service answers."""

from __future__ import annotations

import copy
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from m365connect.api.responses import HEADERS_TOO_LARGE, JSON_NULL, RATE_LIMIT_HEADERS

_FASTAPI_VALIDATION = "Validation Error"
_BAD_REQUEST = {
    "description": "Malformed query or body; `detail` names the field",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/GenericErrorBody"}}},
}
_BEFORE_AUTHENTICATION = frozenset({"401", "413", "431"})  # answered before the rate limiter runs
_REQUEST_ID_HEADER = {
    "description": "The client's X-Request-Id when it sent one of at most 128 printable characters, "
    "else a generated id; also in the service's log line for the request",
    "schema": {"type": "string"},
}


def install_openapi(app: FastAPI) -> None:
    """Serve a document without FastAPI's 422 validation schema (we answer 400, or 404 for a bad id),
    and with the X-Request-Id header every answer carries."""

    def build() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            _replace_validation_errors(schema)
            _add_edge_answers(schema)
            _add_request_id_header(schema)
            app.openapi_schema = _restore_nulls(schema)
        return app.openapi_schema

    app.openapi = build  # type: ignore[method-assign]


def _operations(schema: dict[str, Any]) -> list[dict[str, Any]]:
    return [operation for path in schema.get("paths", {}).values() for operation in path.values()]


def _replace_validation_errors(schema: dict[str, Any]) -> None:
    for operation in _operations(schema):
        responses = operation.get("responses", {})
        if responses.get("422", {}).get("description") != _FASTAPI_VALIDATION:
            continue
        del responses["422"]
        has_query = any(p.get("in") == "query" for p in operation.get("parameters", []))
        if has_query and "400" not in responses:
            responses["400"] = _BAD_REQUEST
    components = schema.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)


def _add_edge_answers(schema: dict[str, Any]) -> None:
    """431 on every route (the edge answers it before routing); the RateLimit-* headers on every answer of
    an authenticated route that got past authentication (when the rate limiter answered)."""
    headers = schema.setdefault("components", {}).setdefault("headers", {})
    headers.update(RATE_LIMIT_HEADERS)
    for operation in _operations(schema):
        responses = operation.setdefault("responses", {})
        responses.setdefault("431", copy.deepcopy(HEADERS_TOO_LARGE))
        if not operation.get("security"):
            continue
        for status, response in responses.items():
            if status not in _BEFORE_AUTHENTICATION:
                response.setdefault("headers", {}).update(
                    {name: {"$ref": f"#/components/headers/{name}"} for name in RATE_LIMIT_HEADERS}
                )


def _add_request_id_header(schema: dict[str, Any]) -> None:
    schema.setdefault("components", {}).setdefault("headers", {})["X-Request-Id"] = _REQUEST_ID_HEADER
    for operation in _operations(schema):
        for response in operation.get("responses", {}).values():
            response.setdefault("headers", {})["X-Request-Id"] = {"$ref": "#/components/headers/X-Request-Id"}


def _restore_nulls(value: Any) -> Any:
    if value == JSON_NULL:
        return None
    if isinstance(value, dict):
        return {key: _restore_nulls(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_restore_nulls(item) for item in value]
    return value
