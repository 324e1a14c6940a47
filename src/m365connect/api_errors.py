"""The one place where exceptions become HTTP responses (Woodpecker's exact bodies)."""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from m365connect.errors import (
    AppError,
    BadRequest,
    EmptyBadRequest,
    GenericError,
    InternalError,
    MethodNotAllowed,
    NotFound,
)

_LOCATIONS = frozenset({"body", "query", "path", "header", "cookie"})

_MAX_CLIENT_REQUEST_ID = 128


def render(error: AppError) -> Response:
    """The HTTP response for an AppError (RequestIdMiddleware adds X-Request-Id)."""
    body = error.body()
    headers = dict(error.headers())
    if body is None:
        return Response(status_code=error.status, headers=headers)
    content = json.dumps(body, separators=(",", ":")).encode()
    return Response(content, status_code=error.status, headers=headers, media_type="application/json")


def describe_validation_error(exc: RequestValidationError) -> str:
    """A one-line detail naming the first offending field of a request body."""
    first = exc.errors()[0]
    kind = str(first.get("type", ""))
    location = list(first.get("loc", ()))
    if location and location[0] in _LOCATIONS:
        location = location[1:]
    field = ".".join(str(part) for part in location)
    if kind == "json_invalid":
        return "The request body is not valid JSON"
    if not field:
        if kind == "missing":
            return "The request body is required"
        return "The request body must be a JSON object"
    if kind == "missing":
        return f"Field '{field}' is required"
    if kind == "extra_forbidden":
        return f"Field '{field}' is not allowed"
    return f"Field '{field}' is invalid: {first.get('msg', 'wrong type')}"


class EmptyBadRequestRoute(APIRoute):
    """A route whose malformed bodies are answered with an empty 400 (the bulk endpoint's contract)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """Wrap the handler so body validation errors become EmptyBadRequest."""
        handler = super().get_route_handler()

        async def empty_400_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                raise EmptyBadRequest() from exc

        return empty_400_handler


async def _on_app_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AppError)
    return render(exc)


async def _on_validation_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    if any(error.get("loc", ("",))[0] == "path" for error in exc.errors()):
        return render(NotFound())  # /credentials/abc names no resource: same 404 as an unknown id
    return render(BadRequest(describe_validation_error(exc)))


async def _on_http_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    error: GenericError
    if exc.status_code == 404:
        error = NotFound()
    elif exc.status_code == 405:
        error = MethodNotAllowed()
    elif exc.status_code == 400:
        error = BadRequest(str(exc.detail))
    else:
        error = InternalError()
    return render(error)


def install_error_handlers(app: FastAPI) -> None:
    """Register every exception handler of the service."""
    app.add_exception_handler(AppError, _on_app_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
