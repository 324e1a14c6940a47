"""State changes and the events that report them, written in the transaction of the change (API.md 6).

One event per change and no repeats while a state persists: each change is claimed by a conditional
UPDATE (repository.py), and only the transaction that made it records the event. Every change of a
transaction is made first and its events are recorded last (events.service: recording locks the account
until the commit, so nothing may wait on another transaction after it): the functions below make changes
and return `Pending` events; `record` writes them, with the objects as they are after all the changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
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


@dataclass
class Pending:
    """Events of changes made in this transaction, to record last: (credential id, type, extra data) and
    (mailbox id, type)."""

    credentials: list[tuple[int, EventType, dict[str, Any]]] = field(default_factory=list)
    mailboxes: list[tuple[int, EventType]] = field(default_factory=list)

    def __iadd__(self, other: Pending) -> Pending:
        self.credentials += other.credentials
        self.mailboxes += other.mailboxes
        return self


async def announce_credential(session: AsyncSession, *, credential_id: int, now: datetime) -> None:
    """Report the credential's status if it changed since the last report, and the expiry reminder it has
    come within (credentials.service.Announcer: call it after the credential's own changes)."""
    await record(session, await credential_changes(session, credential_id=credential_id, now=now))


async def credential_changes(session: AsyncSession, *, credential_id: int, now: datetime) -> Pending:
    """Claim the credential's status change and reminder; a credential that stops working takes its
    mailboxes' health with it. The events to record."""
    pending = Pending()
    credential = await repository.credential_now(session, credential_id)
    if credential is None:
        return pending
    status = credentials.credential_status(credential, now=now)
    if await repository.claim_status(session, credential_id=credential_id, status=status):
        pending.credentials.append((credential_id, _STATUS_EVENTS[status], {}))
        pending += await _cascade(session, credential, status=status, now=now)
    if status == credentials.EXPIRED:
        return pending
    days_left = smallest_threshold(credential, now=now)
    if days_left is not None and await repository.claim_reminder(
        session, credential_id=credential_id, days_left=days_left
    ):
        pending.credentials.append((credential_id, EventType.CREDENTIAL_EXPIRING, {"days_left": days_left}))
    return pending


def smallest_threshold(credential: GraphCredential, *, now: datetime) -> int | None:
    """The smallest reminder threshold (days) the secret's remaining time is within; None: none yet."""
    remaining = (credential.secret_expires_at - now).total_seconds()
    inside = [days for days in REMINDER_DAYS if remaining <= days * credentials.SECONDS_PER_DAY]
    return min(inside) if inside else None


async def _cascade(
    session: AsyncSession, credential: GraphCredential, *, status: str, now: datetime
) -> Pending:
    error = CREDENTIAL_FAILURES.get(status)
    if error is None:  # it works again: its mailboxes that failed for want of a token are checked soon
        await repository.recheck_credential_failures(
            session, credential_id=credential.id, errors=list(CREDENTIAL_FAILURES.values()), now=now
        )
        return Pending()
    changed = await repository.fail_all_of_credential(
        session, credential_id=credential.id, error=error, now=now
    )
    return Pending(mailboxes=[(mailbox_id, EventType.MAILBOX_FAILING) for mailbox_id in changed])


async def mailbox_changes(
    session: AsyncSession, *, verdicts: dict[int, ErrorCode | None], now: datetime
) -> Pending:
    """Store each mailbox's verdict (None: it passed); the events of those whose state changed."""
    pending = Pending()
    for mailbox_id, error in sorted(verdicts.items()):
        if error is None:
            if await repository.mark_ok(session, mailbox_id=mailbox_id, now=now):
                pending.mailboxes.append((mailbox_id, EventType.MAILBOX_RECOVERED))
        elif await repository.mark_failing(session, mailbox_id=mailbox_id, error=error, now=now):
            pending.mailboxes.append((mailbox_id, EventType.MAILBOX_FAILING))
    return pending


async def record(session: AsyncSession, pending: Pending) -> None:
    """Record the pending events, last in the transaction, with each object as it is now."""
    for credential_id, type, extra in pending.credentials:
        credential = await repository.credential_now(session, credential_id)
        if credential is not None:
            data = {**credentials.to_read(credential).model_dump(mode="json"), **extra}
            await record_event(session, account_id=credential.account_id, type=type, data=data)
    by_id = {m.id: m for m in await repository.mailboxes_by_id(session, [m for m, _t in pending.mailboxes])}
    for mailbox_id, type in pending.mailboxes:
        mailbox = by_id[mailbox_id]
        data = mailboxes.to_read(mailbox).model_dump(mode="json")
        await record_event(session, account_id=mailbox.account_id, type=type, data=data)
