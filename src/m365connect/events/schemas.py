"""Wire shapes of the event stream (API.md 6)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class EventRead(BaseModel):
    """One state change: the credential or mailbox object as it is after it (never a secret)."""

    id: int = Field(description="Increasing; the cursor of `GET /rest/v2/events?after=`")
    type: str = Field(description="e.g. `mailbox.connected` (docs/api.md lists every type)")
    occurred_at: str = Field(description="UTC, ISO 8601 with Z")
    data: dict[str, Any]


class EventPage(BaseModel):
    """A page of the account's events, oldest first."""

    events: list[EventRead]
    next_after: int = Field(description="The `after` of the next request: the last id, or the `after` sent")
