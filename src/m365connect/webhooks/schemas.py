"""Wire shapes of the webhook routes (API.md 6)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from m365connect.mailboxes.schemas import PaginationData
from m365connect.wire import Text

# webhooks.url is String(2048) (the length browsers and proxies commonly accept); description String(200).
URL_LENGTH = 2048
DESCRIPTION_LENGTH = 200
# Each type is validated by the service (422 UNKNOWN_EVENT_TYPE); the list is bounded here (400).
MAX_EVENT_TYPES = 50

Url = Annotated[str, Text(min_length=1, max_length=URL_LENGTH)]
Description = Annotated[str, Text(max_length=DESCRIPTION_LENGTH)]
EventTypeName = Annotated[str, Text(min_length=1, max_length=64)]
EventTypes = Annotated[list[EventTypeName], Field(min_length=1, max_length=MAX_EVENT_TYPES)]

READ_EXAMPLE: dict[str, Any] = {
    "id": 7,
    "url": "https://hooks.example.com/m365connect",
    "event_types": ["mailbox.failing", "mailbox.recovered"],
    "description": "Ops alerts",
    "enabled": True,
    "created_at": "2026-12-02T10:00:00Z",
}
CREATE_EXAMPLES: dict[str, Any] = {
    "some": {
        "summary": "Two event types",
        "value": {
            "url": "https://hooks.example.com/m365connect",
            "event_types": ["mailbox.failing", "mailbox.recovered"],
            "description": "Ops alerts",
        },
    },
    "all": {"summary": "Every event type", "value": {"url": "https://hooks.example.com/m365connect"}},
}
UPDATE_EXAMPLES: dict[str, Any] = {
    "disable": {"summary": "Pause deliveries", "value": {"enabled": False}},
    "all_types": {"summary": "Receive every type", "value": {"event_types": None}},
}


class WebhookCreate(BaseModel):
    """A subscription: where to POST events, and which types (null or absent: every type)."""

    model_config = ConfigDict(strict=True)

    url: Url
    event_types: EventTypes | None = None
    description: Description | None = None


class WebhookUpdate(BaseModel):
    """Change a subscription; `event_types` null means every type, `description` null clears it."""

    model_config = ConfigDict(strict=True)

    url: Url | None = None
    event_types: EventTypes | None = None
    description: Description | None = None
    enabled: StrictBool | None = None


class WebhookRead(BaseModel):
    """A subscription (never its secret)."""

    model_config = ConfigDict(json_schema_extra={"examples": [READ_EXAMPLE]})

    id: int
    url: str
    event_types: list[str] | None = Field(description="null: every type")
    description: str | None
    enabled: bool
    created_at: str


class WebhookCreated(WebhookRead):
    """A new subscription with its signing secret, shown only in this answer."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{**READ_EXAMPLE, "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}]}
    )

    secret: str = Field(description="`whsec_` + base64 of 32 random bytes (Standard Webhooks)")


class WebhookList(BaseModel):
    """The account's subscriptions, oldest first."""

    webhooks: list[WebhookRead]


class DeliveryRead(BaseModel):
    """One delivery attempt."""

    event_id: int
    attempted_at: str
    status_code: int | None = Field(description="null when no answer came")
    error: str | None = Field(description="null, or a short reason")
    duration_ms: int


class DeliveryPage(BaseModel):
    """One page of delivery attempts, newest first."""

    content: list[DeliveryRead]
    pagination_data: PaginationData


class WebhookTestQueued(BaseModel):
    """The test event was stored and its delivery queued; its id is the delivery's `webhook-id`."""

    event_id: int
