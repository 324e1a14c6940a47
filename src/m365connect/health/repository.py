"""SQL of background verification: the health columns of mailboxes and credentials, and the planner's reads.

Each state change is a conditional UPDATE whose row count says whether this transaction made it: two
checks of the same object at once (a background one and an on-demand one, in two processes) cannot both
report the change, on SQLite or PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import CompoundSelect, Table, bindparam, case, func, literal, or_, select, union_all, update
from sqlalchemy.ext.asyncio import AsyncSession

from m365connect.credentials.models import GraphCredential
from m365connect.mailboxes.models import ACTIVE, HEALTH_FAILING, HEALTH_OK, Mailbox

_UNANNOUNCED = "VALID"  # announced_status NULL: nothing announced, which is the VALID state
# credentials.service's statuses (a repository imports no service)
_VALID, _EXPIRED, _INVALID = "VALID", "EXPIRED", "INVALID"


async def get_credential(session: AsyncSession, credential_id: int) -> GraphCredential | None:
    """A credential by id, in any account (checks run for every account)."""
    return await session.scalar(select(GraphCredential).where(GraphCredential.id == credential_id))


async def active_mailboxes(
    session: AsyncSession, *, credential_id: int, mailbox_ids: Sequence[int]
) -> Sequence[Mailbox]:
    """Those of these mailboxes that are still ACTIVE with this credential, by id."""
    rows = await session.scalars(
        select(Mailbox)
        .where(
            Mailbox.id.in_(list(mailbox_ids)),
            Mailbox.credential_id == credential_id,
            Mailbox.status == ACTIVE,
        )
        .order_by(Mailbox.id)
    )
    return rows.all()


async def claim_status(session: AsyncSession, *, credential_id: int, status: str) -> bool:
    """Record `status` as announced; True when it was not already (this transaction announces it)."""
    result = await session.execute(
        update(GraphCredential)
        .where(
            GraphCredential.id == credential_id,
            func.coalesce(GraphCredential.announced_status, _UNANNOUNCED) != status,
        )
        .values(announced_status=status)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0))


async def claim_reminder(session: AsyncSession, *, credential_id: int, days_left: int) -> bool:
    """Record the reminder of `days_left`; True when no reminder of that many days or fewer was sent."""
    result = await session.execute(
        update(GraphCredential)
        .where(
            GraphCredential.id == credential_id,
            (GraphCredential.reminded_days_left.is_(None)) | (GraphCredential.reminded_days_left > days_left),
        )
        .values(reminded_days_left=days_left)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0))


async def mark_failing(session: AsyncSession, *, mailbox_id: int, error: str, now: datetime) -> bool:
    """Make an ACTIVE mailbox FAILING with `error`; True when it was OK (a state change to report). A
    mailbox already FAILING gets the new error and check time only."""
    result = await session.execute(
        update(Mailbox)
        .where(Mailbox.id == mailbox_id, Mailbox.status == ACTIVE, Mailbox.health_state == HEALTH_OK)
        .values(health_state=HEALTH_FAILING, health_error=error, failing_since=now, health_checked_at=now)
        .execution_options(synchronize_session=False)
    )
    if getattr(result, "rowcount", 0):
        return True
    await session.execute(
        update(Mailbox)
        .where(Mailbox.id == mailbox_id, Mailbox.status == ACTIVE)
        .values(health_error=error, health_checked_at=now)
        .execution_options(synchronize_session=False)
    )
    return False


async def mark_ok(session: AsyncSession, *, mailbox_id: int, now: datetime) -> bool:
    """Make an ACTIVE mailbox OK; True when it was FAILING (a recovery to report)."""
    result = await session.execute(
        update(Mailbox)
        .where(Mailbox.id == mailbox_id, Mailbox.status == ACTIVE, Mailbox.health_state == HEALTH_FAILING)
        .values(health_state=HEALTH_OK, health_error=None, failing_since=None, health_checked_at=now)
        .execution_options(synchronize_session=False)
    )
    if getattr(result, "rowcount", 0):
        return True
    await session.execute(
        update(Mailbox)
        .where(Mailbox.id == mailbox_id, Mailbox.status == ACTIVE)
        .values(health_checked_at=now)
        .execution_options(synchronize_session=False)
    )
    return False


async def fail_all_of_credential(
    session: AsyncSession, *, credential_id: int, error: str, now: datetime
) -> list[int]:
    """Make every OK ACTIVE mailbox of a credential FAILING with `error`; the ids that changed."""
    result = await session.execute(
        update(Mailbox)
        .where(
            Mailbox.credential_id == credential_id,
            Mailbox.status == ACTIVE,
            Mailbox.health_state == HEALTH_OK,
        )
        .values(health_state=HEALTH_FAILING, health_error=error, failing_since=now, health_checked_at=now)
        .returning(Mailbox.id)
        .execution_options(synchronize_session=False)
    )
    return sorted(result.scalars().all())


async def recheck_credential_failures(
    session: AsyncSession, *, credential_id: int, errors: Iterable[str], now: datetime
) -> None:
    """Make the credential's mailboxes that fail only for want of a token due now (it works again)."""
    await session.execute(
        update(Mailbox)
        .where(
            Mailbox.credential_id == credential_id,
            Mailbox.status == ACTIVE,
            Mailbox.health_state == HEALTH_FAILING,
            Mailbox.health_error.in_(list(errors)),
        )
        .values(next_check_at=now)
        .execution_options(synchronize_session=False)
    )


async def mailboxes_by_id(session: AsyncSession, mailbox_ids: Sequence[int]) -> Sequence[Mailbox]:
    """Mailboxes as stored now (for the `data` of their events), by id."""
    if not mailbox_ids:
        return []
    rows = await session.scalars(
        select(Mailbox)
        .where(Mailbox.id.in_(list(mailbox_ids)))
        .order_by(Mailbox.id)
        .execution_options(populate_existing=True)
    )
    return rows.all()


async def credential_now(session: AsyncSession, credential_id: int) -> GraphCredential | None:
    """The credential as stored now (after this transaction's updates)."""
    return await session.scalar(
        select(GraphCredential)
        .where(GraphCredential.id == credential_id)
        .execution_options(populate_existing=True)
    )


# ---------------------------------------------------------------------------------------------- planning


async def unplanned_credentials(session: AsyncSession, *, limit: int) -> list[tuple[int, datetime]]:
    """(id, secret expiry) of credentials without a due time yet (new, or stored before 0009)."""
    rows = await session.execute(
        select(GraphCredential.id, GraphCredential.secret_expires_at)
        .where(GraphCredential.next_check_at.is_(None))
        .order_by(GraphCredential.id)
        .limit(limit)
    )
    return [(credential_id, expires) for credential_id, expires in rows]


async def due_credentials(
    session: AsyncSession, *, now: datetime, limit: int
) -> list[tuple[int, datetime, datetime]]:
    """(id, due time, secret expiry) of credentials due at `now`, the longest waiting first."""
    rows = await session.execute(
        select(GraphCredential.id, GraphCredential.next_check_at, GraphCredential.secret_expires_at)
        .where(GraphCredential.next_check_at <= now)
        .order_by(GraphCredential.next_check_at)
        .limit(limit)
    )
    return [(credential_id, due, expires) for credential_id, due, expires in rows if due is not None]


async def unplanned_mailboxes(session: AsyncSession, *, limit: int) -> list[int]:
    """ACTIVE mailboxes without a due time yet (just connected, or connected before 0009)."""
    rows = await session.scalars(
        select(Mailbox.id)
        .where(Mailbox.status == ACTIVE, Mailbox.next_check_at.is_(None))
        .order_by(Mailbox.id)
        .limit(limit)
    )
    return list(rows)


async def due_mailboxes(
    session: AsyncSession, *, now: datetime, limit: int
) -> list[tuple[int, int, datetime]]:
    """(id, credential id, due time) of ACTIVE mailboxes due at `now`, the longest waiting first."""
    rows = await session.execute(
        select(Mailbox.id, Mailbox.credential_id, Mailbox.next_check_at)
        .where(Mailbox.status == ACTIVE, Mailbox.next_check_at <= now)
        .order_by(Mailbox.next_check_at)
        .limit(limit)
    )
    return [(mid, cid, due) for mid, cid, due in rows if cid is not None and due is not None]


async def soon_due_of_credential(
    session: AsyncSession, *, credential_id: int, until: datetime, limit: int
) -> list[tuple[int, datetime]]:
    """(id, due time) of one credential's ACTIVE mailboxes due by `until`, soonest first (to fill a batch)."""
    rows = await session.execute(
        select(Mailbox.id, Mailbox.next_check_at)
        .where(
            Mailbox.credential_id == credential_id, Mailbox.status == ACTIVE, Mailbox.next_check_at <= until
        )
        .order_by(Mailbox.next_check_at)
        .limit(limit)
    )
    return [(mid, due) for mid, due in rows if due is not None]


async def set_credential_due(session: AsyncSession, due: Sequence[tuple[int, datetime]]) -> None:
    """Store new due times of credentials (one statement, many parameter sets)."""
    await _set_due(session, cast(Table, GraphCredential.__table__), due)


async def set_mailbox_due(session: AsyncSession, due: Sequence[tuple[int, datetime]]) -> None:
    """Store new due times of mailboxes (one statement, many parameter sets)."""
    await _set_due(session, cast(Table, Mailbox.__table__), due)


async def _set_due(session: AsyncSession, table: Table, due: Sequence[tuple[int, datetime]]) -> None:
    if not due:
        return
    # The Core table: an ORM bulk UPDATE by primary key would want the column named `id` in each dict.
    statement = update(table).where(table.c.id == bindparam("row_id")).values(next_check_at=bindparam("due"))
    await session.execute(statement, [{"row_id": row_id, "due": when} for row_id, when in due])


@dataclass(frozen=True)
class StateCount:
    """How many objects of a kind ("mailbox", "credential") are in a state."""

    kind: str
    state: str
    count: int


def state_counts_statement(*, now: datetime) -> CompoundSelect[str, str, int]:
    """ACTIVE mailboxes by health state and credentials by status, as one statement (kind, state, count).

    A credential's status is the API's (credentials.service.credential_status): EXPIRED once its stated
    expiry passed, else what Microsoft last said. The mailboxes' count reads the partial index
    ix_mailboxes_health_state only (an index-only scan on PostgreSQL, a covering index on SQLite);
    credentials are few (one per app registration)."""
    mailboxes = (
        select(literal("mailbox"), Mailbox.health_state, func.count())
        .where(Mailbox.status == ACTIVE)
        .group_by(Mailbox.health_state)
    )
    status = case(
        (GraphCredential.secret_expires_at <= now, literal(_EXPIRED)),
        (
            or_(
                GraphCredential.verification_status == _INVALID,
                GraphCredential.verification_status == _EXPIRED,
            ),
            GraphCredential.verification_status,
        ),
        else_=literal(_VALID),
    )
    by_status = select(literal("credential"), status, func.count()).group_by(status)
    return union_all(mailboxes, by_status)


async def state_counts(session: AsyncSession, *, now: datetime) -> list[StateCount]:
    """ACTIVE mailboxes by health state and credentials by status, in one statement (for /metrics)."""
    rows = await session.execute(state_counts_statement(now=now))
    return [StateCount(str(kind), str(state), int(count)) for kind, state, count in rows.all()]
