"""SQL for mailboxes. Inserts rely on the partial unique index and the credential foreign key."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, func, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from m365connect.mailboxes.models import ACTIVE, DISCONNECTED, Mailbox

_IN_CHUNK = 500


async def active_by_email(
    session: AsyncSession, *, account_id: int, emails: Sequence[str]
) -> dict[str, Mailbox]:
    """The account's ACTIVE mailboxes among these (normalised) addresses."""
    found: dict[str, Mailbox] = {}
    for start in range(0, len(emails), _IN_CHUNK):
        rows = await session.scalars(
            select(Mailbox).where(
                Mailbox.account_id == account_id,
                Mailbox.status == ACTIVE,
                Mailbox.email.in_(emails[start : start + _IN_CHUNK]),
            )
        )
        found.update({row.email: row for row in rows})
    return found


async def insert_active(session: AsyncSession, *, rows: Sequence[dict[str, Any]]) -> dict[str, int]:
    """Insert ACTIVE mailboxes, skipping addresses already ACTIVE; returns {email: new id} of those inserted.

    A row whose credential no longer exists raises IntegrityError (foreign key). Rows are inserted sorted by
    the unique key whatever order the caller gives them in.
    """
    if not rows:
        return {}
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    # The Core table, not the ORM entity: an ORM multi-row insert re-coerces every value of every row
    # in Python (0.1 ms per row, measured in bench/), and these rows are plain column dicts already.
    # One statement executed with many parameter sets, not `.values(rows)`: SQLAlchemy compiles it once
    # (and caches it) and sends it as multi-row INSERTs ("insertmanyvalues", RETURNING included),
    # where `.values(rows)` compiled a new statement with a bind parameter per value: ~110 ms of CPU
    # per 1000 rows against ~12 ms (docs/performance.md).
    table = cast(Table, Mailbox.__table__)
    statement = (
        insert(table)
        .on_conflict_do_nothing(index_elements=["account_id", "email"], index_where=text("status = 'ACTIVE'"))
        .returning(table.c.id, table.c.email)
    )
    # In the unique key's order: PostgreSQL makes a transaction that meets another's uncommitted entry for
    # the same (account, address) wait for that transaction to end. Two overlapping bulks inserting in
    # request order could each hold an entry the other waits for: `deadlock detected`, a 500 for 10-18 %
    # of ten concurrent bulks of 15 out of 40 addresses. With one global order the first to reach a shared
    # address goes on, the other waits for its commit and never holds what the first still needs.
    ordered = sorted(rows, key=lambda row: (row["account_id"], row["email"]))
    result = await session.execute(statement, ordered)
    return {email: mailbox_id for mailbox_id, email in result}


async def page_for_account(
    session: AsyncSession,
    *,
    account_id: int,
    offset: int,
    limit: int,
    status: str | None,
    address: str | None = None,
    mailbox_type: str | None = None,
    credential_id: int | None = None,
    domain: str | None = None,
    health: str | None = None,
) -> tuple[Sequence[Mailbox], int]:
    """One page of the account's mailboxes (oldest first) and the total count; `address` is a part of the
    address (any case), `domain` the whole part after the @, `mailbox_type` user, shared or unknown,
    `health` OK or FAILING."""
    conditions = [Mailbox.account_id == account_id]
    if status is not None:
        conditions.append(Mailbox.status == status)
    if address:
        conditions.append(func.lower(Mailbox.email).contains(address.lower(), autoescape=True))
    if domain:
        conditions.append(func.lower(Mailbox.email).endswith(f"@{domain.lower()}", autoescape=True))
    if credential_id is not None:
        conditions.append(Mailbox.credential_id == credential_id)
    if health is not None:
        conditions.append(Mailbox.health_state == health)
    if mailbox_type == "unknown":
        conditions.append(Mailbox.mailbox_type.is_(None))
    elif mailbox_type is not None:
        conditions.append(Mailbox.mailbox_type == mailbox_type)
    total = await session.scalar(select(func.count()).select_from(Mailbox).where(*conditions))
    rows = await session.scalars(
        select(Mailbox).where(*conditions).order_by(Mailbox.id).offset(offset).limit(limit)
    )
    return rows.all(), int(total or 0)


async def get_for_account(session: AsyncSession, *, account_id: int, mailbox_id: int) -> Mailbox | None:
    """One of the account's mailboxes; None for a missing id or another account's."""
    return await session.scalar(
        select(Mailbox).where(Mailbox.id == mailbox_id, Mailbox.account_id == account_id)
    )


async def disconnect(session: AsyncSession, *, account_id: int, mailbox_id: int, now: datetime) -> bool:
    """Mark an ACTIVE mailbox DISCONNECTED; False (no-op) when it already is."""
    result = await session.execute(
        update(Mailbox)
        .where(Mailbox.id == mailbox_id, Mailbox.account_id == account_id, Mailbox.status == ACTIVE)
        .values(status=DISCONNECTED, disconnected_at=now)
    )
    return bool(getattr(result, "rowcount", 0))
