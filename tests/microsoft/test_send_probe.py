"""The send probe's verdicts (send_probe_error) and where rule 6b sits among the rules."""

from __future__ import annotations

from typing import Any

import pytest

from m365connect.codes import ErrorCode
from m365connect.microsoft.graph_types import GraphResponse
from m365connect.microsoft.mailbox_verification import (
    SEND_PROBE_BODY,
    send_probe_error,
    send_probe_request,
    user_problem,
)

NO_RECIPIENTS = (
    "At least one recipient isn't valid., A message can't be sent because it contains no recipients."
)


def answer(status: int, code: str | None = None, message: str = "...") -> GraphResponse:
    body = {"error": {"code": code, "message": message}} if code is not None else None
    return GraphResponse(id="0", status=status, headers={}, body=body)


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (answer(400, "ErrorInvalidRecipients", NO_RECIPIENTS), None),  # authorised, then refused: in scope
        (answer(400, "errorinvalidrecipients", NO_RECIPIENTS), None),  # codes compare case-insensitively
        (answer(202), None),  # accepted without recipients: allowed, and nothing to deliver
        (
            answer(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again."),
            "MAILBOX_ACCESS_DENIED",
        ),
        (answer(403, "ErrorAccessDenied", "Access to OData is disabled."), "MAILBOX_ACCESS_DENIED"),
        (
            answer(404, "MailboxNotEnabledForRESTAPI", "The mailbox is either inactive..."),
            "NO_EXCHANGE_MAILBOX",
        ),
        (answer(429, "TooManyRequests"), "MICROSOFT_THROTTLED"),
        (answer(0), "MICROSOFT_UNAVAILABLE"),
    ],
)
def test_what_each_probe_answer_says(response: GraphResponse, expected: str | None) -> None:
    assert send_probe_error(response) == (ErrorCode(expected) if expected else None)


def test_the_probe_message_has_no_recipient_and_is_not_kept() -> None:
    request = send_probe_request("7", "user/with?odd#id")
    assert (request.id, request.method, request.url) == (
        "7",
        "POST",
        "/users/user%2Fwith%3Fodd%23id/sendMail",
    )
    assert request.headers == {"Content-Type": "application/json"}
    message: dict[str, Any] = request.body["message"]
    assert not {"toRecipients", "ccRecipients", "bccRecipients"} & set(message)
    assert request.body is SEND_PROBE_BODY
    assert SEND_PROBE_BODY["saveToSentItems"] is False


USER = {
    "id": "u",
    "mail": "jim@t.test",
    "proxyAddresses": ["SMTP:jim@t.test", "smtp:jimmy@t.test"],
    "accountEnabled": True,
    "userType": "Member",
}
DENIED = ErrorCode.MAILBOX_ACCESS_DENIED


@pytest.mark.parametrize(
    ("address", "changes", "purpose", "expected"),
    [
        ("jim@t.test", {}, None, DENIED),
        ("jimmy@t.test", {}, None, DENIED),  # before WRONG_ALIAS: no primary_email for a refused mailbox
        ("jim@t.test", {"accountEnabled": False}, None, ErrorCode.MAILBOX_DISABLED),  # the account first
        ("jim@t.test", {"accountEnabled": False}, "shared", DENIED),
        ("jim@t.test", {}, "room", ErrorCode.UNSUPPORTED_MAILBOX_TYPE),  # the type first
        ("jim@t.test", {"userType": "Guest"}, None, ErrorCode.NO_EXCHANGE_MAILBOX),
    ],
)
def test_rule_6b_comes_after_the_mailbox_facts_and_before_the_alias(
    address: str, changes: dict[str, Any], purpose: str | None, expected: ErrorCode
) -> None:
    assert user_problem(address, USER | changes, purpose=purpose, send_error=DENIED) == expected
