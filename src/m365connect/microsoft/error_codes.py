"""The tables from Microsoft's answers to our error codes (m365connect.codes):
- Graph answers to per-item codes (API.md §3): rows are tried in order; the first whose status, error code
  and (where Microsoft forces it) message match wins. Codes compare case-insensitively, messages after
  trimming and case-folding. docs/graph-client.md explains each row.
- Identity-platform answers (AADSTS codes, OAuth `error`) to the credential codes of a 422, or "retry".
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal

from m365connect.codes import ErrorCode
from m365connect.microsoft.graph_types import GraphResponse

logger = logging.getLogger("m365connect.microsoft.error_codes")


@dataclass(frozen=True)
class ErrorRule:
    """One row: `status` (one status or a range), Graph's `error.code` (None = any), message (None = any)."""

    status: int | range
    code: str | None
    message: str | None
    result: ErrorCode

    def matches(self, status: int, code: str | None, message: str | None) -> bool:
        """True when this row applies to the answer."""
        in_status = status in self.status if isinstance(self.status, range) else status == self.status
        if not in_status:
            return False
        if self.code is not None and (code or "").casefold() != self.code.casefold():
            return False
        return self.message is None or (message or "").strip().casefold() == self.message.casefold()


_E = ErrorCode
GRAPH_ERROR_TABLE: tuple[ErrorRule, ...] = (
    # Directory (GET /users?$filter=...): the app lacks User.Read.All.
    ErrorRule(403, "Authorization_RequestDenied", None, _E.MISSING_PERMISSIONS),
    # Exchange (mailboxSettings, sendMail): an application access policy or RBAC for Applications.
    ErrorRule(403, "ErrorAccessDenied", "Access to OData is disabled.", _E.MAILBOX_ACCESS_DENIED),
    ErrorRule(403, "extensionError", None, _E.MAILBOX_ACCESS_DENIED),
    # Exchange: the app lacks MailboxSettings.Read / Mail.Send ("Access is denied. Check credentials...").
    ErrorRule(403, "ErrorAccessDenied", None, _E.MISSING_PERMISSIONS),
    # Any other 403 is Graph's "the caller doesn't have permission".
    ErrorRule(403, None, None, _E.MISSING_PERMISSIONS),
    # A valid token without any role (admin consent never given): no refresh helps.
    ErrorRule(401, "NoPermissionsInAccessToken", None, _E.MISSING_PERMISSIONS),
    # The user vanished between lookup and probe.
    ErrorRule(404, "Request_ResourceNotFound", None, _E.MAILBOX_NOT_FOUND),
    # No Exchange Online mailbox: unlicensed, on-premises, soft-deleted, guest.
    ErrorRule(404, "MailboxNotEnabledForRESTAPI", None, _E.NO_EXCHANGE_MAILBOX),
    ErrorRule(404, "ErrorMailboxNotEnabledForRESTAPI", None, _E.NO_EXCHANGE_MAILBOX),
    ErrorRule(404, "ResourceNotFound", None, _E.NO_EXCHANGE_MAILBOX),
    ErrorRule(404, "ErrorInvalidUser", None, _E.NO_EXCHANGE_MAILBOX),
    # Any other 404 on a user's mailbox: the user exists (we found it), its mailbox does not.
    ErrorRule(404, None, None, _E.NO_EXCHANGE_MAILBOX),
    # Past the retry budget (the client has already retried these).
    ErrorRule(429, None, None, _E.MICROSOFT_THROTTLED),
    ErrorRule(range(500, 600), None, None, _E.MICROSOFT_UNAVAILABLE),
    ErrorRule(0, None, None, _E.MICROSOFT_UNAVAILABLE),  # no usable answer: network, timeout, bad JSON
)
# Anything else (400 Request_UnsupportedQuery, 409, 424...) is unexpected: logged, and reported as
# "try again later" rather than blaming the mailbox for what is probably our request.
UNMAPPED = ErrorCode.MICROSOFT_UNAVAILABLE


def map_graph_error(status: int, code: str | None, message: str | None) -> ErrorCode:
    """Our per-item code for a Graph error answer (status 0 = no usable answer)."""
    for rule in GRAPH_ERROR_TABLE:
        if rule.matches(status, code, message):
            return rule.result
    logger.warning("graph.unmapped_error", extra={"status": status, "code": code})
    return UNMAPPED


def map_response(response: GraphResponse) -> ErrorCode:
    """`map_graph_error` for a non-2xx GraphResponse."""
    return map_graph_error(response.status, response.error_code, response.error_message)


RETRY: Literal["retry"] = "retry"
TokenVerdict = ErrorCode | Literal["retry"]
"""What an identity-platform error answer means: a credential code, or a transient failure to retry."""

# AADSTS code -> verdict (most specific; Microsoft's docs: error codes refine, `error` decides).
AADSTS_TABLE: dict[int, TokenVerdict] = {
    90002: _E.INVALID_TENANT_ID,  # InvalidTenantName
    900023: _E.INVALID_TENANT_ID,  # tenant identifier neither a GUID nor a DNS name
    90072: _E.INVALID_TENANT_ID,  # account/app not in this tenant (guest-style)
    700016: _E.INVALID_CLIENT_ID,  # application not found in the directory
    7000112: _E.INVALID_CLIENT_ID,  # application disabled
    70001: _E.INVALID_CLIENT_ID,  # application disabled (older code)
    7000215: _E.INVALID_CLIENT_SECRET,  # invalid client secret
    7000216: _E.INVALID_CLIENT_SECRET,  # client_assertion or client_secret required
    7000218: _E.INVALID_CLIENT_SECRET,  # client_secret missing
    7000222: _E.CLIENT_SECRET_EXPIRED,  # client secret keys expired
    # Certificate credentials (client assertion). 700027/50013 say why in a "[Reason - ...]": see below.
    700027: _E.CERTIFICATE_NOT_REGISTERED,  # "key was not found": the thumbprint is not the app's
    50013: _E.CERTIFICATE_NOT_REGISTERED,  # assertion failed signature validation (older code)
    50027: _E.CREDENTIAL_REJECTED,  # invalid or malformed JWT (no thumbprint in the header, ...)
    700021: _E.CREDENTIAL_REJECTED,  # assertion's iss/sub do not match client_id
    700024: _E.CREDENTIAL_REJECTED,  # assertion not within its valid time range (our clock)
    50012: _E.CREDENTIAL_REJECTED,  # assertion audience does not match the token endpoint
    90055: RETRY,  # TenantThrottlingError
    50196: RETRY,  # LoopDetected
    50033: RETRY,  # RetryableError
    90006: RETRY,  # ExternalServerRetryableError
    90024: RETRY,  # RequestBudgetExceededError
    90033: RETRY,  # MsodsServiceUnavailable
    90090: RETRY,  # GraphRetryableError
}
# The signature codes carry the real cause in their description: an expired certificate is refused with
# the same code as an unknown one ("[Reason - The key used is expired., Thumbprint of key used by ...").
AADSTS_REASONS: tuple[tuple[int, str, TokenVerdict], ...] = (
    (700027, "the key used is expired", _E.CLIENT_SECRET_EXPIRED),
    (50013, "the key used is expired", _E.CLIENT_SECRET_EXPIRED),
)
# OAuth `error` -> verdict, when no AADSTS code is known.
OAUTH_ERROR_TABLE: dict[str, TokenVerdict] = {
    "invalid_tenant": _E.INVALID_TENANT_ID,
    "unauthorized_client": _E.INVALID_CLIENT_ID,
    "invalid_client": _E.INVALID_CLIENT_SECRET,
    "temporarily_unavailable": RETRY,
}


def classify_token_error(status: int, body: Any) -> TokenVerdict:
    """The verdict on an identity-platform error answer; an unknown refusal is CREDENTIAL_REJECTED."""
    if status == 429 or status >= 500:
        return RETRY
    error = body.get("error") if isinstance(body, dict) else None
    codes = body.get("error_codes") if isinstance(body, dict) else None
    if isinstance(codes, list):
        description = body.get("error_description") if isinstance(body, dict) else None
        reason = description.casefold() if isinstance(description, str) else ""
        for code, phrase, verdict in AADSTS_REASONS:
            if code in codes and phrase in reason:
                return verdict
        for code in codes:
            if isinstance(code, int) and code in AADSTS_TABLE:
                return AADSTS_TABLE[code]
    if isinstance(error, str) and error in OAUTH_ERROR_TABLE:
        return OAUTH_ERROR_TABLE[error]
    return _E.CREDENTIAL_REJECTED
