"""The webhooks' background work on the engine: the `webhook.deliver` job kind, the outbox pass and the
log's pruning as periodic tasks (run once per period across all processes)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from m365connect.db.base import utcnow
from m365connect.webhooks.delivery import deliver_job_kind
from m365connect.webhooks.dispatch import dispatch
from m365connect.webhooks.service import prune_delivery_log

if TYPE_CHECKING:
    from m365connect.state import AppState

logger = logging.getLogger("m365connect.webhooks")

DISPATCH_TASK = "webhooks.dispatch"
DISPATCH_EVERY_SECONDS = 1.0  # how late a delivery may start after its event, at most (plus the queue's wait)
DISPATCH_LIMIT = 500  # events read per pass; a larger backlog drains over the next passes
PRUNE_TASK = "webhooks.prune"
PRUNE_EVERY_SECONDS = 3600.0


def register_webhook_work(state: AppState) -> None:
    """Register the delivery job kind (retried on WEBHOOK_RETRY_DELAYS) and the two periodic tasks."""
    state.work.register(deliver_job_kind(state))

    async def dispatch_pass() -> None:
        async with state.transactions.begin() as session:
            read = await dispatch(session, state.work.enqueue, limit=DISPATCH_LIMIT)
        if read:
            logger.debug("webhook.dispatch", extra={"events": read})

    async def prune() -> None:
        async with state.transactions.begin() as session:
            removed = await prune_delivery_log(session, now=utcnow())
        logger.info("webhook.log.pruned", extra={"removed": removed})

    state.work.every(DISPATCH_TASK, DISPATCH_EVERY_SECONDS, dispatch_pass)
    state.work.every(PRUNE_TASK, PRUNE_EVERY_SECONDS, prune)
