"""Errors raised by the Microsoft Graph client.

    GraphError                      base; carries the HTTP status, Graph's error code and request ids
    └── GraphAuthenticationError    Graph rejected the token (401) again after one forced refresh

Throttling (429) and unavailability (5xx, network errors, timeouts, malformed JSON) are never raised:
they are per-request outcomes (`GraphResponse.outcome`), so that one item never fails a bulk request.
Errors from the token provider (the token client's own tree) propagate unchanged.
"""

from __future__ import annotations


class GraphError(Exception):
    """Base of errors raised by the Graph client; never carries a token."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        code: str | None,
        request_id: str | None,
        client_request_id: str | None,
    ) -> None:
        super().__init__(f"{message} (HTTP {status}, code={code}, request-id={request_id})")
        self.status = status
        self.code = code
        self.request_id = request_id
        self.client_request_id = client_request_id


class GraphAuthenticationError(GraphError):
    """Graph answered 401 to a freshly refreshed token: the credential no longer works."""
