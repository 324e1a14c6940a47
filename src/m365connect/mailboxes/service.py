"""Mailbox reads and disconnection (API.md §4)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from m365connect.db.base import utcnow
from m365connect.errors import NotFound
from m365connect.events.service import record_event
from m365connect.events.types import EventType
from m365connect.mailboxes import repository
from m365connect.mailboxes.models import HEALTH_FAILING, Mailbox
from m365connect.mailboxes.schemas import (
    Deliverability,
    MailboxHealth,
    MailboxPage,
    MailboxRead,
    PaginationData,
    mailbox_type_of,
)
from m365connect.wire import iso_z

PAGE_SIZE = 50


class MailboxFields(Protocol):
    """What `to_read` reads: a Mailbox row, or the plain values of one just inserted in bulk (building
    1000 ORM objects and reading their instrumented attributes cost ~20 ms of CPU; plain values ~5 ms)."""

    @property
    def id(self) -> int: ...
    @property
    def email(self) -> str: ...
    @property
    def name(self) -> str | None: ...
    @property
    def credential_id(self) -> int | None: ...
    @property
    def microsoft_user_id(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def mailbox_type(self) -> str | None: ...
    @property
    def spf_correct(self) -> bool: ...
    @property
    def dkim_correct(self) -> bool: ...
    @property
    def dmarc_correct(self) -> bool | None: ...
    @property
    def connected_at(self) -> datetime: ...
    @property
    def disconnected_at(self) -> datetime | None: ...
    @property
    def health_state(self) -> str: ...
    @property
    def health_error(self) -> str | None: ...
    @property
    def health_checked_at(self) -> datetime | None: ...
    @property
    def failing_since(self) -> datetime | None: ...


def to_read(mailbox: MailboxFields) -> MailboxRead:
    """The wire shape of a mailbox."""
    return MailboxRead(
        id=mailbox.id,
        email=mailbox.email,
        name=mailbox.name,
        credential_id=mailbox.credential_id,
        microsoft_user_id=mailbox.microsoft_user_id,
        status=mailbox.status,
        mailbox_type=mailbox_type_of(mailbox.mailbox_type),
        deliverability=stored_deliverability(mailbox),
        connected_at=iso_z(mailbox.connected_at) or "",
        disconnected_at=iso_z(mailbox.disconnected_at),
        health=MailboxHealth(
            state="FAILING" if mailbox.health_state == HEALTH_FAILING else "OK",
            error=mailbox.health_error,
            checked_at=iso_z(mailbox.health_checked_at),
            failing_since=iso_z(mailbox.failing_since),
        ),
    )


def stored_deliverability(mailbox: MailboxFields) -> Deliverability:
    """The flags saved when the mailbox was connected."""
    return Deliverability(
        spf_correct=mailbox.spf_correct,
        dkim_correct=mailbox.dkim_correct,
        dmarc_correct=mailbox.dmarc_correct,
    )


@dataclass(frozen=True)
class MailboxFilter:
    """Which mailboxes a page lists (the console's filters; the API filters by status only)."""

    status: str | None = None
    address: str | None = None  # a part of the address, any case
    mailbox_type: str | None = None  # user, shared or unknown
    credential_id: int | None = None
    domain: str | None = None  # the whole part after the @
    health: str | None = None  # OK or FAILING


async def list_page(session: AsyncSession, *, account_id: int, page: int, status: str | None) -> MailboxPage:
    """Page `page` (0-based) of the account's mailboxes, oldest first."""
    return await search_page(session, account_id=account_id, page=page, filters=MailboxFilter(status=status))


async def search_page(
    session: AsyncSession, *, account_id: int, page: int, filters: MailboxFilter
) -> MailboxPage:
    """Page `page` (0-based) of the account's mailboxes that pass `filters`, oldest first."""
    rows, total = await repository.page_for_account(
        session,
        account_id=account_id,
        offset=page * PAGE_SIZE,
        limit=PAGE_SIZE,
        status=filters.status,
        address=filters.address,
        mailbox_type=filters.mailbox_type,
        credential_id=filters.credential_id,
        domain=filters.domain,
        health=filters.health,
    )
    return MailboxPage(
        content=[to_read(row) for row in rows],
        pagination_data=PaginationData(
            total_elements=total,
            total_pages=math.ceil(total / PAGE_SIZE),
            current_page_number=page + 1,
            page_size=PAGE_SIZE,
        ),
    )


async def get_mailbox(session: AsyncSession, *, account_id: int, mailbox_id: int) -> Mailbox:
    """One of the account's mailboxes, or 404."""
    mailbox = await repository.get_for_account(session, account_id=account_id, mailbox_id=mailbox_id)
    if mailbox is None:
        raise NotFound()
    return mailbox


async def disconnect(session: AsyncSession, *, account_id: int, mailbox_id: int) -> None:
    """Disconnect (idempotent: only the change emits `mailbox.disconnected`); the row stays for history and
    frees its credential."""
    mailbox = await get_mailbox(session, account_id=account_id, mailbox_id=mailbox_id)
    if not await repository.disconnect(session, account_id=account_id, mailbox_id=mailbox_id, now=utcnow()):
        return
    await session.refresh(mailbox)
    data = to_read(mailbox).model_dump(mode="json")
    await record_event(session, account_id=account_id, type=EventType.MAILBOX_DISCONNECTED, data=data)
