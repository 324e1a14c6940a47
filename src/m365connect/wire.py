"""Small helpers shared by the wire schemas."""

from __future__ import annotations

from datetime import UTC, datetime, time


def iso_z(moment: datetime | None) -> str | None:
    """ISO 8601, UTC, seconds precision, with `Z` (API.md §1)."""
    if moment is None:
        return None
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso_datetime(text: str) -> datetime:
    """An ISO 8601 date-time (no zone means UTC) or a date (the end of that day, UTC)."""
    value = text.strip()
    if len(value) == 10:
        day = datetime.fromisoformat(value).date()
        return datetime.combine(day, time(23, 59, 59), tzinfo=UTC)
    parsed = datetime.fromisoformat(value)
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
