"""mailboxSettings and sendMail: mailbox types, Exchange's errors, policy blocks and recorded mail."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from m365connect.simulator import FakeMicrosoft

from .example import APPS, CONTOSO

Bearer = Callable[[str], dict[str, str]]
MESSAGE = {
    "message": {
        "subject": "Connection test",
        "body": {"contentType": "Text", "content": "token 42"},
        "toRecipients": [{"emailAddress": {"address": "seed@ours.example"}}],
    },
    "saveToSentItems": "false",
}


def _error(response: httpx.Response) -> tuple[int, str, str]:
    error = response.json()["error"]
    assert error["innerError"]["request-id"] == response.headers["request-id"]
    return response.status_code, error["code"], error["message"]


@pytest.mark.parametrize(
    ("user", "purpose"),
    [
        ("jim@contoso.com", "user"),
        ("accounting@contoso.com", "shared"),
        ("conference-room@contoso.com", "room"),
    ],
)
def test_user_purpose_is_the_mailbox_type(
    client: httpx.Client, bearer: Bearer, user: str, purpose: str
) -> None:
    response = client.get(
        f"/v1.0/users/{user}/mailboxSettings?$select=userPurpose", headers=bearer("connector")
    )

    assert response.status_code == 200
    assert response.json() == {
        "@odata.context": f"{client.base_url}/v1.0/$metadata#users('{user}')/mailboxSettings(userPurpose)",
        "userPurpose": purpose,
    }


def test_full_mailbox_settings_without_select(client: httpx.Client, bearer: Bearer) -> None:
    response = client.get("/v1.0/users/pam@contoso.com/mailboxSettings", headers=bearer("connector"))

    settings = response.json()
    assert settings["userPurpose"] == "user"
    assert {"timeZone", "language", "workingHours", "automaticRepliesSetting"} <= set(settings)


@pytest.mark.parametrize(
    ("app", "user", "expected"),
    [
        (
            "reader",
            "jim@contoso.com",
            (403, "ErrorAccessDenied", "Access is denied. Check credentials and try again."),
        ),
        (
            "no_roles",
            "jim@contoso.com",
            (403, "ErrorAccessDenied", "Access is denied. Check credentials and try again."),
        ),
        ("connector", "kevin@contoso.com", (403, "ErrorAccessDenied", "Access to OData is disabled.")),
        ("connector", "creed@contoso.com", (404, "MailboxNotEnabledForRESTAPI", None)),
        (
            "connector",
            "holly_northwindtraders.com%23EXT%23@contoso.onmicrosoft.com",
            (404, "MailboxNotEnabledForRESTAPI", None),
        ),
        (
            "connector",
            "nobody@contoso.com",
            (404, "ErrorInvalidUser", "The requested user 'nobody@contoso.com' is invalid."),
        ),
    ],
)
def test_mailbox_settings_errors(
    client: httpx.Client, bearer: Bearer, app: str, user: str, expected: tuple[int, str, str | None]
) -> None:
    response = client.get(f"/v1.0/users/{user}/mailboxSettings", headers=bearer(app))

    status, code, message = _error(response)
    assert (status, code) == expected[:2]
    assert message == (
        expected[2] or "The mailbox is either inactive, soft-deleted, or is hosted on-premise."
    )


def test_mailbox_settings_unknown_select_property(client: httpx.Client, bearer: Bearer) -> None:
    response = client.get(
        "/v1.0/users/jim@contoso.com/mailboxSettings?$select=mood", headers=bearer("connector")
    )

    assert _error(response) == (
        400,
        "RequestBroker--ParseUri",
        "Could not find a property named 'mood' on type 'microsoft.graph.mailboxSettings'.",
    )


def test_send_mail_is_accepted_and_recorded(
    client: httpx.Client, bearer: Bearer, fake: FakeMicrosoft
) -> None:
    response = client.post("/v1.0/users/jim@contoso.com/sendMail", json=MESSAGE, headers=bearer("connector"))

    assert (response.status_code, response.content) == (202, b"")
    [sent] = client.get("/_simulator/sent-mail").json()["value"]
    assert sent["tenant_id"] == CONTOSO
    assert sent["client_id"] == APPS["connector"].client_id
    assert (sent["user_principal_name"], sent["from"]) == ("jim@contoso.com", "jim@contoso.com")
    assert sent["recipients"] == ["seed@ours.example"]
    assert sent["save_to_sent_items"] is False
    assert sent["message"]["body"]["content"] == "token 42"
    assert fake.sent_mail == [sent]


def test_send_mail_reads_property_names_in_any_case(
    client: httpx.Client, bearer: Bearer, fake: FakeMicrosoft
) -> None:
    """msgraph-sdk sends the action's parameters in PascalCase; Graph reads property names in any case."""
    body = {
        "Message": {
            "subject": "Connection test",
            "ToRecipients": [{"EmailAddress": {"Address": "seed@ours.example"}}],
            "ccRecipients": [{"emailAddress": {"ADDRESS": "copy@ours.example"}}],
        },
        "SaveToSentItems": False,
    }
    response = client.post("/v1.0/users/jim@contoso.com/sendMail", json=body, headers=bearer("connector"))

    assert (response.status_code, response.content) == (202, b"")
    [sent] = fake.sent_mail
    assert sent["recipients"] == ["seed@ours.example", "copy@ours.example"]
    assert sent["save_to_sent_items"] is False


def test_send_mime_message(client: httpx.Client, bearer: Bearer, fake: FakeMicrosoft) -> None:
    mime = "From: pam@contoso.com\r\nTo: Seed <seed@ours.example>\r\nSubject: hi\r\n\r\nbody\r\n"
    response = client.post(
        "/v1.0/users/pam@contoso.com/sendMail",
        content=base64.b64encode(mime.encode()),
        headers={**bearer("connector"), "Content-Type": "text/plain"},
    )

    assert response.status_code == 202
    assert fake.sent_mail[0]["mime"] == mime
    assert fake.sent_mail[0]["recipients"] == ["seed@ours.example"]


@pytest.mark.parametrize(
    ("app", "user", "body", "expected"),
    [
        (
            "reader",
            "jim@contoso.com",
            MESSAGE,
            (403, "ErrorAccessDenied", "Access is denied. Check credentials and try again."),
        ),
        (
            "connector",
            "kevin@contoso.com",
            MESSAGE,
            (403, "ErrorAccessDenied", "Access to OData is disabled."),
        ),
        ("connector", "creed@contoso.com", MESSAGE, (404, "MailboxNotEnabledForRESTAPI", None)),
        ("connector", "jimothy@contoso.com", MESSAGE, (404, "ErrorInvalidUser", None)),
        (
            "connector",
            "jim@contoso.com",
            {},
            (400, "ErrorInvalidParameter", "The value of the parameter 'Message' is empty."),
        ),
        (
            "connector",
            "jim@contoso.com",
            {"message": {"subject": "no one"}},
            (400, "ErrorInvalidRecipients", None),
        ),
        (
            "connector",
            "jim@contoso.com",
            {"message": {"toRecipients": [{"emailAddress": {}}]}},
            (400, "ErrorInvalidRecipients", "At least one recipient isn't valid."),
        ),
    ],
)
def test_send_mail_errors(
    client: httpx.Client,
    bearer: Bearer,
    fake: FakeMicrosoft,
    app: str,
    user: str,
    body: dict[str, Any],
    expected: tuple[int, str, str | None],
) -> None:
    response = client.post(f"/v1.0/users/{user}/sendMail", json=body, headers=bearer(app))

    status, code, message = _error(response)
    assert (status, code) == expected[:2]
    if expected[2] is not None:
        assert message == expected[2]
    assert fake.sent_mail == []


@pytest.mark.parametrize(
    ("content", "content_type", "expected_code"),
    [
        (b"{not json", "application/json", "BadRequest"),
        (b'{"message": {}}', "application/xml", "BadRequest"),
        (b"***not base64***", "text/plain", "ErrorMimeContentInvalidBase64String"),
    ],
)
def test_unreadable_send_mail_bodies(
    client: httpx.Client, bearer: Bearer, content: bytes, content_type: str, expected_code: str
) -> None:
    response = client.post(
        "/v1.0/users/jim@contoso.com/sendMail",
        content=content,
        headers={**bearer("connector"), "Content-Type": content_type},
    )

    assert _error(response)[:2] == (400, expected_code)
