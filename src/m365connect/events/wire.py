"""The wire shape of an event, one function for GET /events and webhook bodies (API.md 6)."""

from __future__ import annotations

from typing import Any

from m365connect.events.models import Event
from m365connect.wire import iso_z


def event_json(event: Event) -> dict[str, Any]:
    """`{"id", "type", "occurred_at", "data"}`: what GET /events lists and a webhook delivery POSTs."""
    return {"id": event.id, "type": event.type, "occurred_at": iso_z(event.occurred_at), "data": event.data}
