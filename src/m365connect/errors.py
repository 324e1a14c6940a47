"""The service's error tree; each error knows its HTTP status and its wire body.

    AppError                      (abstract: status + body)
    ├── GenericError              {"title", "status", "detail", "timestamp"}
    │   ├── BadRequest            400  detail names the offending field
    │   ├── Unauthorized          401  "Invalid api key"
    │   ├── NotFound              404  "Requested resource does not exist"
    │   ├── MethodNotAllowed      405
    │   ├── RequestTimeout        408  the request did not arrive in time (server.py, before the app)
    │   ├── PayloadTooLarge       413
    │   ├── TooManyRequests       429  + Retry-After (RateLimit-* headers come from the middleware)
    │   ├── HeadersTooLarge       431
    │   ├── InternalError         500  never a stack trace
    │   └── ServiceUnavailable    503  + Retry-After (Microsoft or the database is unreachable)
    ├── EmptyBadRequest           400  no body (bulk endpoint, as Woodpecker documents)
    └── ValidationCodeError       422  {"message": CODE}

Only `m365connect.api.error_handlers` turns these into HTTP responses.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from m365connect.codes import ErrorCode


def wire_timestamp(now: datetime | None = None) -> str:
    """Woodpecker's timestamp format: `YYYY-MM-DD HH:MM:SS`, UTC, no zone."""
    return (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


class AppError(Exception):
    """Base of every error the API answers on purpose."""

    status: ClassVar[int] = 500

    def body(self) -> dict[str, Any] | None:
        """The JSON body, or None for an empty body."""
        raise NotImplementedError

    def headers(self) -> dict[str, str]:
        """Extra response headers."""
        return {}


class GenericError(AppError):
    """An error rendered in Woodpecker's generic body."""

    title: ClassVar[str] = "Internal server error"
    default_detail: ClassVar[str] = "An unexpected error has occurred. Please try again later."

    def __init__(self, detail: str | None = None) -> None:
        self.detail = detail or self.default_detail
        super().__init__(self.detail)

    def body(self) -> dict[str, Any]:
        """The generic body with a fresh timestamp."""
        return {
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "timestamp": wire_timestamp(),
        }


class BadRequest(GenericError):
    """The body is not JSON, not an object, or a field is missing or of the wrong type."""

    status = 400
    title = "Bad Request"
    default_detail = "The request body is invalid"


class Unauthorized(GenericError):
    """Missing, unknown or revoked API key."""

    status = 401
    title = "Unauthorized"
    default_detail = "Invalid api key"


class NotFound(GenericError):
    """Unknown path, unknown id, or another account's id."""

    status = 404
    title = "Not Found"
    default_detail = "Requested resource does not exist"


class MethodNotAllowed(GenericError):
    """The path exists but not with this method."""

    status = 405
    title = "Method Not Allowed"
    default_detail = "Request method is not supported for this resource"


class RequestTimeout(GenericError):
    """The request's head or body did not arrive within its deadline (answered by the server protocol)."""

    status = 408
    title = "Request Timeout"
    default_detail = "The request did not arrive in time"


class PayloadTooLarge(GenericError):
    """The request body is larger than the service accepts."""

    status = 413
    title = "Payload Too Large"
    default_detail = "The request body is too large"


class HeadersTooLarge(GenericError):
    """The request's header fields are larger than the service accepts."""

    status = 431
    title = "Request Header Fields Too Large"
    default_detail = "The request header fields are too large"


class _RetryableError(GenericError):
    def __init__(self, detail: str | None = None, *, retry_after: int = 1) -> None:
        super().__init__(detail)
        self.retry_after = max(1, retry_after)

    def headers(self) -> dict[str, str]:
        """Retry-After in whole seconds."""
        return {"Retry-After": str(self.retry_after)}


class TooManyRequests(_RetryableError):
    """The API key sent too many requests."""

    status = 429
    title = "Too Many Requests"
    default_detail = "Too many requests. Please retry later."


class InternalError(GenericError):
    """Anything unexpected; the body never carries details."""

    status = 500


class ServiceUnavailable(_RetryableError):
    """Microsoft (or the database) could not be reached; nothing was saved."""

    status = 503
    title = "Service Unavailable"
    default_detail = "Microsoft could not be reached. Nothing was saved; please try again later."


class EmptyBadRequest(AppError):
    """A 400 with no body (the bulk endpoint's documented answer to a malformed body)."""

    status = 400

    def body(self) -> None:
        """No body."""
        return None


class ValidationCodeError(AppError):
    """A 422 with `{"message": CODE}`."""

    status = 422

    def __init__(self, code: ErrorCode) -> None:
        self.code = code
        super().__init__(code)

    def body(self) -> dict[str, Any]:
        """The documented validation body."""
        return {"message": self.code}
