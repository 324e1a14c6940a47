"""Errors of the command-line client; each carries what the user needs to act on it.

ClientError                  (message for the user; exit code 1)
├── ServiceUnreachable       no HTTP answer from the service (connection refused, timeout)
├── ApiError                 the service answered with an error status
│   └── CodeError            422 {"message": CODE}
└── InputError               the input file cannot be used (exit code 2)
"""

from __future__ import annotations

from m365connect.explanations import Context, explain


class ClientError(Exception):
    """Base of the errors the client reports as one clear message."""

    exit_code = 1


class ServiceUnreachable(ClientError):
    """The service did not answer at all."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        super().__init__(f"cannot reach the service at {url}: {reason}")


class ApiError(ClientError):
    """The service answered with an error status."""

    def __init__(self, status: int, detail: str | None = None, context: Context | None = None) -> None:
        self.status = status
        self.detail = detail
        shown = f" ({detail})" if detail else ""
        super().__init__(f"HTTP {status}{shown}: {explain(str(status), context)}")


class CodeError(ApiError):
    """A 422 answer with its code."""

    def __init__(self, code: str, context: Context | None = None) -> None:
        self.status = 422
        self.detail = self.code = code
        ClientError.__init__(self, f"{code}: {explain(code, context)}")


class InputError(ClientError):
    """The input file is missing or has no usable columns."""

    exit_code = 2
