"""The Graph error-code table: every row, its order, and what falls through it."""

from __future__ import annotations

import pytest

from m365connect.codes import ErrorCode
from m365connect.microsoft.error_codes import GRAPH_ERROR_TABLE, UNMAPPED, map_graph_error
from m365connect.microsoft.graph_types import GraphResponse, Outcome

ODATA = "Access to OData is disabled."
DENIED = "Access is denied. Check credentials and try again."

# (status, code, message, expected); at least one case per row of the table
CASES = [
    (403, "Authorization_RequestDenied", "Insufficient privileges.", "MISSING_PERMISSIONS"),
    (403, "ErrorAccessDenied", ODATA, "MAILBOX_ACCESS_DENIED"),
    (403, "ErrorAccessDenied", " access to odata is disabled. ", "MAILBOX_ACCESS_DENIED"),  # casefolded
    (403, "extensionError", "An application policy prevents access.", "MAILBOX_ACCESS_DENIED"),
    (403, "ErrorAccessDenied", DENIED, "MISSING_PERMISSIONS"),
    (403, "erroraccessdenied", None, "MISSING_PERMISSIONS"),  # codes compare case-insensitively
    (403, "accessDenied", None, "MISSING_PERMISSIONS"),
    (403, None, None, "MISSING_PERMISSIONS"),
    (401, "NoPermissionsInAccessToken", "The token contains no permissions.", "MISSING_PERMISSIONS"),
    (404, "Request_ResourceNotFound", "Resource 'x' does not exist.", "MAILBOX_NOT_FOUND"),
    (404, "MailboxNotEnabledForRESTAPI", "REST API is not yet supported.", "NO_EXCHANGE_MAILBOX"),
    (404, "ErrorMailboxNotEnabledForRESTAPI", None, "NO_EXCHANGE_MAILBOX"),
    (404, "ResourceNotFound", "Resource could not be discovered.", "NO_EXCHANGE_MAILBOX"),
    (404, "ErrorInvalidUser", "The requested user 'x' is invalid.", "NO_EXCHANGE_MAILBOX"),
    (404, "itemNotFound", None, "NO_EXCHANGE_MAILBOX"),
    (429, "TooManyRequests", "Please retry again later.", "MICROSOFT_THROTTLED"),
    (429, None, None, "MICROSOFT_THROTTLED"),
    (500, "generalException", None, "MICROSOFT_UNAVAILABLE"),
    (503, "serviceNotAvailable", None, "MICROSOFT_UNAVAILABLE"),
    (599, None, None, "MICROSOFT_UNAVAILABLE"),
    (0, None, None, "MICROSOFT_UNAVAILABLE"),
]


@pytest.mark.parametrize(("status", "code", "message", "expected"), CASES)
def test_table(status, code, message, expected) -> None:
    assert map_graph_error(status, code, message) == expected


def test_every_row_is_exercised_by_a_case() -> None:
    first_match = {
        next(i for i, rule in enumerate(GRAPH_ERROR_TABLE) if rule.matches(status, code, message))
        for status, code, message, _ in CASES
    }
    assert first_match == set(range(len(GRAPH_ERROR_TABLE)))


@pytest.mark.parametrize(
    ("status", "code"), [(400, "Request_UnsupportedQuery"), (409, "Conflict"), (424, None), (200, None)]
)
def test_unmapped_answers_fall_through_to_retry_later(status, code) -> None:
    assert not any(rule.matches(status, code, None) for rule in GRAPH_ERROR_TABLE)
    assert map_graph_error(status, code, None) == UNMAPPED == ErrorCode.MICROSOFT_UNAVAILABLE


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, Outcome.ANSWERED),
        (404, Outcome.ANSWERED),
        (429, Outcome.THROTTLED),
        (0, Outcome.UNAVAILABLE),
        (503, Outcome.UNAVAILABLE),
    ],
)
def test_outcome_agrees_with_the_table(status, outcome) -> None:
    response = GraphResponse(id="1", status=status, headers={}, body=None)
    assert response.outcome is outcome
    if outcome is Outcome.THROTTLED:
        assert map_graph_error(status, None, None) == "MICROSOFT_THROTTLED"
    if outcome is Outcome.UNAVAILABLE:
        assert map_graph_error(status, None, None) == "MICROSOFT_UNAVAILABLE"


def test_response_reads_the_graph_error_body() -> None:
    body = {"error": {"code": "ErrorAccessDenied", "message": ODATA, "innerError": {"request-id": "r"}}}
    response = GraphResponse(id="1", status=403, headers={"request-id": "r-1"}, body=body)
    assert (response.error_code, response.error_message, response.request_id) == (
        "ErrorAccessDenied",
        ODATA,
        "r-1",
    )
    assert GraphResponse(id="1", status=403, headers={}, body="oops").error_code is None
