"""Imports every model so that `metadata` knows every table (used by Alembic's comparison)."""

from __future__ import annotations

from m365connect.accounts.models import Account, ApiKey
from m365connect.console.models import ConsoleSession
from m365connect.credentials.models import GraphCredential
from m365connect.db.base import Base
from m365connect.events.models import Event
from m365connect.jobs.models import BulkJob, BulkJobItem
from m365connect.mailboxes.models import Mailbox
from m365connect.pacing.models import PaceBudget, PaceSlot
from m365connect.webhooks.models import Webhook, WebhookDelivery
from m365connect.work.models import WorkSchedule

metadata = Base.metadata

__all__ = [
    "Account",
    "ApiKey",
    "BulkJob",
    "BulkJobItem",
    "ConsoleSession",
    "Event",
    "GraphCredential",
    "Mailbox",
    "PaceBudget",
    "PaceSlot",
    "Webhook",
    "WebhookDelivery",
    "WorkSchedule",
    "metadata",
]
