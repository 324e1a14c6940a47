"""The OpenAPI document, corrected where FastAPI's defaults differ from what the service answers."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

_FASTAPI_VALIDATION = "Validation Error"
_BAD_REQUEST = {
    "description": "Malformed query or body; `detail` names the field",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/GenericErrorBody"}}},
}


def install_openapi(app: FastAPI) -> None:
    """Serve a document without FastAPI's 422 validation schema: we answer 400 (or 404 for a bad id)."""

    def build() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            _replace_validation_errors(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = build  # type: ignore[method-assign]


def _replace_validation_errors(schema: dict[str, Any]) -> None:
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
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
