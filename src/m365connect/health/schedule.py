"""When each object is checked: a fixed phase per object inside the interval, the same in every process.

An object's checks fall at `phase + k * interval` (k whole), its phase a hash of its kind and id. So the
checks of N objects are spread evenly over the interval whatever order they were created or planned in, a
restart plans nobody twice, and a new object's first check lands somewhere in its first interval instead
of all new objects at once. Pure functions: the planner (planner.py) applies them.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)  # integer milliseconds: no float rounding can put a slot at or before now


def phase_ms(kind: str, object_id: int, interval: int) -> int:
    """Milliseconds into each interval at which this object is due (stable across processes, restarts)."""
    digest = hashlib.sha256(f"{kind}:{object_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % (interval * 1000)


def next_slot(after: datetime, *, kind: str, object_id: int, interval: int) -> datetime:
    """The object's first due time strictly after `after` (within one interval of it)."""
    offset, period = phase_ms(kind, object_id, interval), interval * 1000
    elapsed = (after - _EPOCH) // _MS
    cycles = (elapsed - offset) // period + 1
    return _EPOCH + (offset + cycles * period) * _MS


def advance(
    slot: datetime,
    now: datetime,
    *,
    kind: str,
    object_id: int,
    interval: int,
    margin: timedelta = timedelta(0),
) -> datetime:
    """The due time after a check planned for `slot`: the object's next own slot after `slot` (one
    interval later), or, when the check was overdue (the service was down), its next slot after
    `now + margin`, so that overdue objects return to their own phases instead of staying bunched, and
    no sooner than `margin` (the planner's lookahead: an object is not pulled in again at once)."""
    return next_slot(max(slot, now + margin), kind=kind, object_id=object_id, interval=interval)


def next_milestone(expires_at: datetime, now: datetime, *, reminder_days: tuple[int, ...]) -> datetime | None:
    """The next moment after `now` at which a credential's check has news: a reminder threshold (that many
    days before `expires_at`) or the expiry itself; None when all have passed."""
    moments = [expires_at - timedelta(days=days) for days in reminder_days] + [expires_at]
    upcoming = [moment for moment in moments if moment > now]
    return min(upcoming) if upcoming else None
