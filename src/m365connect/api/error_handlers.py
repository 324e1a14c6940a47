"""The one place where exceptions become HTTP responses (Woodpecker's exact bodies)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from m365connect.db.errors import DatabaseUnreachable, is_transient
from m365connect.errors import (
    AppError,
    BadRequest,
    EmptyBadRequest,
    GenericError,
    InternalError,
    MethodNotAllowed,
    NotFound,
    ServiceUnavailable,
)

logger = logging.getLogger("m365connect.api")

_LOCATIONS = frozenset({"body", "query", "path", "header", "cookie"})


def render(error: AppError) -> Response:
    """The HTTP response for an AppError (EdgeMiddleware adds X-Request-Id)."""
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


class JsonTooDeep(StarletteHTTPException):
    """The request body nests arrays and objects deeper than the limit (raised while the body arrives).

    An HTTPException because FastAPI re-raises those from body reading as they are (any other exception
    becomes its own 400), so each route answers it in its own 400 shape.
    """

    def __init__(self, limit: int) -> None:
        super().__init__(status_code=400, detail=f"The request body is nested deeper than {limit} levels")


class EmptyBadRequestRoute(APIRoute):
    """A route whose malformed bodies are answered with an empty 400 (the bulk endpoint's contract)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """Wrap the handler so body validation errors become EmptyBadRequest."""
        handler = super().get_route_handler()

        async def empty_400_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except (RequestValidationError, JsonTooDeep) as exc:
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


# Only the database's own failures: a ConnectionError or TimeoutError from anything else is a bug (500).
DATABASE_UNREACHABLE = (DBAPIError, SQLAlchemyTimeoutError, DatabaseUnreachable)


def database_unavailable(exc: Exception) -> ServiceUnavailable | None:
    """The 503 for a database that cannot be reached, or None when `exc` is a real bug (the generic 500)."""
    if isinstance(exc, DBAPIError) and not is_transient(exc):
        return None  # bad SQL, a violated constraint nobody handled
    logger.warning("database.unavailable", extra={"error": type(exc).__name__})
    return ServiceUnavailable("The database is unavailable. Nothing was saved; please retry.", retry_after=5)


async def _on_database_unavailable(_request: Request, exc: Exception) -> Response:
    error = database_unavailable(exc)
    if error is None:
        raise exc
    return render(error)


def install_error_handlers(app: FastAPI) -> None:
    """Register every exception handler of the service."""
    app.add_exception_handler(AppError, _on_app_error)
    for unreachable in DATABASE_UNREACHABLE:
        app.add_exception_handler(unreachable, _on_database_unavailable)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
