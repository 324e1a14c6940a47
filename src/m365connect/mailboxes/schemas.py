"""Wire shapes of the bulk endpoint and the mailbox reads (API.md §3, §4)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from m365connect.api.responses import example
from m365connect.wire import Text, WireId, WireText

# mailboxes.name is String(256). The submitted address has no length here: an address longer than any
# valid one is that item's INVALID_EMAIL, and the stored address is Microsoft's primary one.
DISPLAY_NAME_LENGTH = 256
DisplayName = Annotated[str, Text(max_length=DISPLAY_NAME_LENGTH)]

BULK_EXAMPLE: dict[str, Any] = {
    "auth_type": "APP_ONLY",
    "credential_id": 22334455,
    "accounts": [
        {"mailbox_email": "jim@example.com", "display_name": "Jimothy H"},
        {"mailbox_email": "michael@example.com", "display_name": "Michael Scarn"},
    ],
}

BULK_EXAMPLES: dict[str, Any] = {
    "documented": {"summary": "With a credential id", "value": BULK_EXAMPLE},
    "single_credential": {
        "summary": "credential_id omitted: the account has exactly one VALID credential",
        "value": {"accounts": [{"mailbox_email": "jim@example.com"}]},
    },
}
_CONNECTED: dict[str, Any] = {
    "success": True,
    "id": 444444,
    "email": "jim@example.com",
    "name": "Jimothy H",
    "deliverability": {
        "spf_correct": True,
        "dkim_correct": False,
        "dmarc_correct": True,
        "spf_reason": "ok",
        "dkim_reason": "dns_error",
        "dmarc_reason": "ok",
    },
    "error": None,
    "mailbox_type": "user",
}
_STORED_FLAGS = {"spf_correct": True, "dkim_correct": True, "dmarc_correct": True}
_UNKNOWN_REASONS = {"spf_reason": None, "dkim_reason": None, "dmarc_reason": None}
BULK_CREATED_EXAMPLE: list[dict[str, Any]] = [
    _CONNECTED,
    {**_CONNECTED, "id": 444445, "email": "sales@example.com", "name": "Sales", "mailbox_type": "shared"},
    {
        **_CONNECTED,
        "id": 444446,
        "email": "pam@example.com",
        "name": "Pam Beesly",
        "deliverability": {**_STORED_FLAGS, **_UNKNOWN_REASONS},
        "already_connected": True,
    },
]
BULK_MULTI_STATUS_EXAMPLE: list[dict[str, Any]] = [
    _CONNECTED,
    {
        "success": False,
        "id": None,
        "email": "michael@example.com",
        "name": "Michael Scarn",
        "deliverability": None,
        "error": "WRONG_ALIAS",
        "mailbox_type": "user",
        "primary_email": "mscott@example.com",
    },
    {
        "success": False,
        "id": None,
        "email": "boardroom@example.com",
        "name": "Boardroom",
        "deliverability": None,
        "error": "UNSUPPORTED_MAILBOX_TYPE",
        "mailbox_type": None,
    },
    {
        "success": False,
        "id": None,
        "email": "dwight@example.com",
        "name": None,
        "deliverability": None,
        "error": "MICROSOFT_THROTTLED",
        "mailbox_type": None,
    },
]
MAILBOX_EXAMPLE: dict[str, Any] = {
    "id": 444444,
    "email": "jim@example.com",
    "name": "Jimothy H",
    "credential_id": 22334455,
    "microsoft_user_id": "87d349ed-44d7-43e1-9a83-5f2406dee5bd",
    "status": "ACTIVE",
    "mailbox_type": "shared",
    "deliverability": _STORED_FLAGS,
    "connected_at": "2026-11-21T20:00:00Z",
    "disconnected_at": None,
    "health": {"state": "OK", "error": None, "checked_at": "2026-11-22T04:12:09Z", "failing_since": None},
}


class BulkAccount(BaseModel):
    """One mailbox to connect."""

    model_config = ConfigDict(strict=True)

    mailbox_email: WireText
    display_name: DisplayName | None = None


class BulkRequest(BaseModel):
    """Mailboxes to connect with one Microsoft Graph credential."""

    model_config = ConfigDict(strict=True, json_schema_extra={"examples": [BULK_EXAMPLE]})

    auth_type: WireText | None = Field(default="APP_ONLY", description="Only APP_ONLY is supported")
    credential_id: WireId | None = Field(
        default=None, description="Optional only when the account has exactly one valid credential"
    )
    accounts: list[BulkAccount]


MailboxType = Literal["user", "shared"]


def mailbox_type_of(value: str | None) -> MailboxType | None:
    """The wire's mailbox_type of a stored or verified one; anything but user or shared reads as unknown."""
    return "user" if value == "user" else "shared" if value == "shared" else None


def _mailbox_type_field() -> Any:
    return Field(
        default=None,
        description="user or shared (Graph's userPurpose); null when the app may not read mailboxSettings "
        "(MailboxSettings.Read), so the type is not known, or for a mailbox connected before it was recorded",
    )


class Deliverability(BaseModel):
    """SPF, DKIM and DMARC of the mailbox's domain, for Microsoft 365."""

    spf_correct: bool
    dkim_correct: bool
    dmarc_correct: bool | None = Field(
        description="The domain or its organizational domain publishes one valid DMARC record with a policy "
        "(docs/deliverability.md); null for a mailbox connected before this check existed"
    )


class MailboxHealth(BaseModel):
    """The last background or on-demand verification of a mailbox (API.md 6)."""

    state: Literal["OK", "FAILING"] = Field(description="A FAILING mailbox stays ACTIVE")
    error: str | None = Field(
        description="While FAILING: a per-item code of POST /bulk, or CREDENTIAL_EXPIRED / CREDENTIAL_INVALID"
    )
    checked_at: str | None = Field(description="Last check; null: not checked since it was connected")
    failing_since: str | None


class CheckedDeliverability(Deliverability):
    """The flags with the reason for each (docs/deliverability.md lists them: `ok`, `dns_error` for a DNS
    failure, and what is wrong with a record); the reasons are null on an `already_connected` result,
    whose flags are the ones stored when it was connected."""

    spf_reason: str | None = None
    dkim_reason: str | None = None
    dmarc_reason: str | None = None


class BulkResult(BaseModel):
    """The outcome for one submitted mailbox (in request order)."""

    success: bool
    id: int | None
    email: str
    name: str | None
    deliverability: CheckedDeliverability | None
    error: str | None
    mailbox_type: MailboxType | None = _mailbox_type_field()
    primary_email: str | None = Field(default=None, description="Only on WRONG_ALIAS: the address to submit")
    already_connected: bool | None = Field(default=None, description="Only on an idempotent re-add: true")

    def wire(self) -> dict[str, Any]:
        """The documented fields always; the extra ones only when they apply."""
        return self.model_dump(exclude={"primary_email", "already_connected"}) | {
            key: value
            for key, value in (
                ("primary_email", self.primary_email),
                ("already_connected", self.already_connected),
            )
            if value is not None
        }


class MailboxRead(BaseModel):
    """A connected (or disconnected) mailbox."""

    model_config = ConfigDict(json_schema_extra={"examples": [example(MAILBOX_EXAMPLE)]})

    id: int
    email: str
    name: str | None
    credential_id: int | None
    microsoft_user_id: str
    status: str = Field(description="ACTIVE or DISCONNECTED")
    mailbox_type: MailboxType | None = _mailbox_type_field()
    deliverability: Deliverability
    connected_at: str
    disconnected_at: str | None
    health: MailboxHealth


class PaginationData(BaseModel):
    """Woodpecker v2 pagination block."""

    total_elements: int
    total_pages: int
    current_page_number: int = Field(description="1-based")
    page_size: int


class MailboxPage(BaseModel):
    """One page of mailboxes, oldest first."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "content": [example(MAILBOX_EXAMPLE)],
                    "pagination_data": {
                        "total_elements": 1,
                        "total_pages": 1,
                        "current_page_number": 1,
                        "page_size": 50,
                    },
                }
            ]
        }
    )

    content: list[MailboxRead]
    pagination_data: PaginationData
