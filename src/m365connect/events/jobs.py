"""The event stream's background work: purging events past the retention, once an hour across all
processes (API.md 6: events are kept at least 30 days)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from m365connect.events.service import purge_events, retention_cutoff

if TYPE_CHECKING:
    from m365connect.state import AppState

logger = logging.getLogger("m365connect.events")

PURGE_TASK = "events.purge"
PURGE_EVERY_SECONDS = 3600.0


def register_event_work(state: AppState) -> None:
    """Register the hourly purge of events older than M365CONNECT_EVENT_RETENTION_DAYS."""

    async def purge() -> None:
        cutoff = retention_cutoff(retention_days=state.settings.event_retention_days)
        async with state.sessions() as session:  # purge_events commits after each batch itself
            removed = await purge_events(session, older_than=cutoff)
        if removed:
            logger.info("events.purged", extra={"removed": removed})

    state.work.every(PURGE_TASK, PURGE_EVERY_SECONDS, purge)
