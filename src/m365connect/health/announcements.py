"""State changes and the events that report them, written in the transaction of the change (API.md 6).

One event per change and no repeats while a state persists: each change is claimed by a conditional
UPDATE (repository.py), and only the transaction that made it records the event.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from m365connect.codes import ErrorCode
from m365connect.credentials import service as credentials
from m365connect.credentials.models import GraphCredential
from m365connect.events.service import record_event
from m365connect.events.types import EventType
from m365connect.health import repository
from m365connect.mailboxes import service as mailboxes

# Days before expiry at which `credential.expiring` is sent, once each per secret or certificate.
REMINDER_DAYS = (30, 7, 1)
_STATUS_EVENTS = {
    credentials.EXPIRED: EventType.CREDENTIAL_EXPIRED,
    credentials.INVALID: EventType.CREDENTIAL_FAILING,
    credentials.VALID: EventType.CREDENTIAL_RECOVERED,
}
# What a mailbox's health says when its credential no longer obtains a token.
CREDENTIAL_FAILURES = {
    credentials.EXPIRED: ErrorCode.CREDENTIAL_EXPIRED,
    credentials.INVALID: ErrorCode.CREDENTIAL_INVALID,
}


def credential_data(credential: GraphCredential, **extra: Any) -> dict[str, Any]:
    """An event's `data`: the credential object as it is now (never a secret)."""
    return {**credentials.to_read(credential).model_dump(mode="json"), **extra}


async def announce_credential(session: AsyncSession, *, credential_id: int, now: datetime) -> None:
    """Report the credential's status if it changed since the last report, and the expiry reminder it has
    come within; a credential that stops working takes its mailboxes' health with it."""
    credential = await repository.credential_now(session, credential_id)
    if credential is None:
        return
    status = credentials.credential_status(credential, now=now)
    if await repository.claim_status(session, credential_id=credential_id, status=status):
        await record_event(
            session,
            account_id=credential.account_id,
            type=_STATUS_EVENTS[status],
            data=credential_data(credential),
        )
        await _cascade(session, credential, status=status, now=now)
    if status == credentials.EXPIRED:
        return
    days_left = smallest_threshold(credential, now=now)
    if days_left is not None and await repository.claim_reminder(
        session, credential_id=credential_id, days_left=days_left
    ):
        await record_event(
            session,
            account_id=credential.account_id,
            type=EventType.CREDENTIAL_EXPIRING,
            data=credential_data(credential, days_left=days_left),
        )


def smallest_threshold(credential: GraphCredential, *, now: datetime) -> int | None:
    """The smallest reminder threshold (days) the secret's remaining time is within; None: none yet."""
    remaining = (credential.secret_expires_at - now).total_seconds()
    inside = [days for days in REMINDER_DAYS if remaining <= days * credentials.SECONDS_PER_DAY]
    return min(inside) if inside else None


async def _cascade(session: AsyncSession, credential: GraphCredential, *, status: str, now: datetime) -> None:
    error = CREDENTIAL_FAILURES.get(status)
    if error is None:  # it works again: its mailboxes that failed for want of a token are checked soon
        await repository.recheck_credential_failures(
            session, credential_id=credential.id, errors=list(CREDENTIAL_FAILURES.values()), now=now
        )
        return
    changed = await repository.fail_all_of_credential(
        session, credential_id=credential.id, error=error, now=now
    )
    await _report_mailboxes(session, changed, EventType.MAILBOX_FAILING)


async def set_mailbox_health(
    session: AsyncSession, *, verdicts: dict[int, ErrorCode | None], now: datetime
) -> None:
    """Store each mailbox's verdict (None: it passed) and report those whose state changed."""
    failing, recovered = [], []
    for mailbox_id, error in sorted(verdicts.items()):
        if error is None:
            if await repository.mark_ok(session, mailbox_id=mailbox_id, now=now):
                recovered.append(mailbox_id)
        elif await repository.mark_failing(session, mailbox_id=mailbox_id, error=error, now=now):
            failing.append(mailbox_id)
    await _report_mailboxes(session, failing, EventType.MAILBOX_FAILING)
    await _report_mailboxes(session, recovered, EventType.MAILBOX_RECOVERED)


async def _report_mailboxes(session: AsyncSession, mailbox_ids: list[int], type: EventType) -> None:
    for mailbox in await repository.mailboxes_by_id(session, mailbox_ids):
        await record_event(
            session,
            account_id=mailbox.account_id,
            type=type,
            data=mailboxes.to_read(mailbox).model_dump(mode="json"),
        )
