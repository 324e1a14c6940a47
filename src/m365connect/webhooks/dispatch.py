"""The outbox: hands each new event to the work engine once per subscription that wants it.

Each subscription keeps a cursor (`last_dispatched_event_id`). A pass reads the account's events after it,
enqueues a `webhook.deliver` job for each whose type the subscription takes, and moves the cursor past
every event it read, all in the caller's transaction (the Enqueue protocol adds the jobs to it): either
the jobs and the new cursor are committed together, or neither is, so an event is neither lost nor queued
twice by a dispatcher that dies. Two passes at once (replicas) are safe: PostgreSQL skips the
subscriptions another pass has locked, and the cursor moves by compare-and-set before anything is queued,
so on SQLite (which has no row locks) the pass that loses the race queues nothing. This relies on event
ids committing in order per account (the events writer takes the account row's lock), so no event can
appear behind a cursor that already passed its id.
`webhook.test` events are never dispatched: the test route queues them for its one subscription.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from m365connect.webhooks import repository
from m365connect.webhooks.service import DELIVER_KIND, dedupe_key
from m365connect.work.ports import Enqueue


async def dispatch(session: AsyncSession, enqueue: Enqueue, *, limit: int) -> int:
    """One outbox pass over the enabled subscriptions, reading at most `limit` events in all; how many it
    read (the cursors moved past them; 0: nothing new). Call it again while it returns `limit`."""
    budget = limit
    for webhook in await repository.enabled_for_dispatch(session):
        if budget <= 0:
            break
        events = await repository.events_after(
            session, account_id=webhook.account_id, after=webhook.last_dispatched_event_id, limit=budget
        )
        if not events:
            continue
        budget -= len(events)
        # The cursor first: a pass that did not move it (another one did) queues nothing for it.
        if not await repository.advance_cursor(
            session, webhook_id=webhook.id, old=webhook.last_dispatched_event_id, to=events[-1][0]
        ):
            continue
        wanted = None if webhook.event_types is None else frozenset(webhook.event_types)
        for event_id, event_type in events:
            if wanted is None or event_type in wanted:
                await enqueue(
                    session,
                    DELIVER_KIND,
                    {"subscription_id": webhook.id, "event_id": event_id},
                    dedupe_key=dedupe_key(webhook_id=webhook.id, event_id=event_id),
                )
    return limit - budget
