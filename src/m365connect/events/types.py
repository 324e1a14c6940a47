"""The event types of API.md 6, the one list that the API, webhooks and tests name."""

from __future__ import annotations

from enum import StrEnum


class EventType(StrEnum):
    """An event's `type`; its value is its wire name."""

    CREDENTIAL_CREATED = "credential.created"
    CREDENTIAL_UPDATED = "credential.updated"
    CREDENTIAL_DELETED = "credential.deleted"
    CREDENTIAL_EXPIRING = "credential.expiring"
    CREDENTIAL_EXPIRED = "credential.expired"
    CREDENTIAL_FAILING = "credential.failing"
    CREDENTIAL_RECOVERED = "credential.recovered"
    MAILBOX_CONNECTED = "mailbox.connected"
    MAILBOX_DISCONNECTED = "mailbox.disconnected"
    MAILBOX_FAILING = "mailbox.failing"
    MAILBOX_RECOVERED = "mailbox.recovered"
    BULK_JOB_FINISHED = "bulk_job.finished"
    # Delivered only to the one subscription that asked for it (POST /webhooks/{id}/test); never stored
    # in an account's stream.
    WEBHOOK_TEST = "webhook.test"


# What a subscription may name in `event_types`.
SUBSCRIBABLE = frozenset(EventType) - {EventType.WEBHOOK_TEST}
