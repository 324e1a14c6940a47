"""The one table from Microsoft Graph answers to our per-item error codes (API.md §3).

Rows are tried in order; the first whose status, error code and (where Microsoft forces it) message
match wins. Codes compare case-insensitively, messages after trimming and case-folding. Reference:
microsoft-graph.md §4.3-4.4, §6 and §9.4; docs/graph-client.md explains each row.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum

from m365connect.microsoft.graph_types import GraphResponse

logger = logging.getLogger("m365connect.microsoft.error_codes")


class MailboxError(StrEnum):
    """Per-item codes of POST /rest/v2/mailboxes/microsoft/bulk that Graph answers decide."""

    MAILBOX_NOT_FOUND = "MAILBOX_NOT_FOUND"
    WRONG_ALIAS = "WRONG_ALIAS"
    MAILBOX_DISABLED = "MAILBOX_DISABLED"
    NO_EXCHANGE_MAILBOX = "NO_EXCHANGE_MAILBOX"
    MISSING_PERMISSIONS = "MISSING_PERMISSIONS"
    MAILBOX_ACCESS_DENIED = "MAILBOX_ACCESS_DENIED"
    MICROSOFT_THROTTLED = "MICROSOFT_THROTTLED"
    MICROSOFT_UNAVAILABLE = "MICROSOFT_UNAVAILABLE"


@dataclass(frozen=True)
class ErrorRule:
    """One row: `status` (one status or a range), Graph's `error.code` (None = any), message (None = any)."""

    status: int | range
    code: str | None
    message: str | None
    result: MailboxError

    def matches(self, status: int, code: str | None, message: str | None) -> bool:
        """True when this row applies to the answer."""
        in_status = status in self.status if isinstance(self.status, range) else status == self.status
        if not in_status:
            return False
        if self.code is not None and (code or "").casefold() != self.code.casefold():
            return False
        return self.message is None or (message or "").strip().casefold() == self.message.casefold()


_E = MailboxError
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
UNMAPPED = MailboxError.MICROSOFT_UNAVAILABLE


def map_graph_error(status: int, code: str | None, message: str | None) -> MailboxError:
    """Our per-item code for a Graph error answer (status 0 = no usable answer)."""
    for rule in GRAPH_ERROR_TABLE:
        if rule.matches(status, code, message):
            return rule.result
    logger.warning("graph.unmapped_error", extra={"status": status, "code": code})
    return UNMAPPED


def map_response(response: GraphResponse) -> MailboxError:
    """`map_graph_error` for a non-2xx GraphResponse."""
    return map_graph_error(response.status, response.error_code, response.error_message)
