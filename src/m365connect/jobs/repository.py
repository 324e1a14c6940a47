"""SQL for bulk jobs and their items."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from datetime import datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, Table, and_, bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from m365connect.jobs.models import QUEUED, RUNNING, BulkJob, BulkJobItem

# Items inserted per statement at the 202: bounded memory for the statement, few round trips.
INSERT_BATCH = 1000


async def insert_job(session: AsyncSession, *, job: BulkJob) -> BulkJob:
    """Add the job row (flushed: the unique idempotency key raises IntegrityError here)."""
    session.add(job)
    await session.flush()
    return job


async def insert_items(session: AsyncSession, *, rows: Iterable[dict[str, Any]]) -> None:
    """The job's input, in batches of INSERT_BATCH rows (one statement, many parameter sets), taken from
    `rows` one batch at a time."""
    table = cast(Table, BulkJobItem.__table__)
    iterator = iter(rows)
    while batch := list(itertools.islice(iterator, INSERT_BATCH)):
        await session.execute(table.insert(), batch)


async def by_key(session: AsyncSession, *, account_id: int, key: str) -> BulkJob | None:
    """The account's job that holds this idempotency key."""
    found = await session.scalars(
        select(BulkJob).where(BulkJob.account_id == account_id, BulkJob.idempotency_key == key)
    )
    return found.first()


async def release_key(session: AsyncSession, *, job_id: int) -> None:
    """Free an expired idempotency key for a new job."""
    await session.execute(update(BulkJob).where(BulkJob.id == job_id).values(idempotency_key=None))
    await session.flush()


async def get_for_account(session: AsyncSession, *, account_id: int, job_id: int) -> BulkJob | None:
    """One of the account's jobs."""
    found = await session.scalars(
        select(BulkJob).where(BulkJob.id == job_id, BulkJob.account_id == account_id)
    )
    return found.first()


async def lock(session: AsyncSession, *, job_id: int) -> BulkJob | None:
    """The job, locked until the transaction ends, read fresh from the database.

    The lock is a write (a no-op UPDATE), not SELECT ... FOR UPDATE: SQLite has no row locks and runs a
    SELECT outside any write lock, so two chunks could read the same counts and one update be lost
    (seen: 50 items missing from `processed`). The UPDATE takes SQLite's write lock and PostgreSQL's row
    lock alike, so everything read after it is current until the commit.
    """
    await session.execute(update(BulkJob).where(BulkJob.id == job_id).values(status=BulkJob.status))
    found = await session.scalars(
        select(BulkJob).where(BulkJob.id == job_id).execution_options(populate_existing=True)
    )
    return found.first()


async def page_for_account(
    session: AsyncSession, *, account_id: int, offset: int, limit: int
) -> tuple[list[BulkJob], int]:
    """A page of the account's jobs, newest first, and how many it has."""
    rows = await session.scalars(
        select(BulkJob)
        .where(BulkJob.account_id == account_id)
        .order_by(BulkJob.id.desc())
        .offset(offset)
        .limit(limit)
    )
    total = await session.scalar(
        select(func.count()).select_from(BulkJob).where(BulkJob.account_id == account_id)
    )
    return list(rows), int(total or 0)


async def items_between(session: AsyncSession, *, job_id: int, start: int, end: int) -> list[BulkJobItem]:
    """The job's items at positions start <= position < end, in order."""
    rows = await session.scalars(
        select(BulkJobItem)
        .where(BulkJobItem.job_id == job_id, BulkJobItem.position >= start, BulkJobItem.position < end)
        .order_by(BulkJobItem.position)
    )
    return list(rows)


def _failed() -> ColumnElement[bool]:
    """An item whose result is written and is a failure (`"success": false`)."""
    success: ColumnElement[bool] = BulkJobItem.result["success"].as_boolean()
    return and_(BulkJobItem.result.is_not(None), success.is_(False))


async def failed_items(session: AsyncSession, *, job_id: int, offset: int, limit: int) -> list[BulkJobItem]:
    """The job's failed items, in order, `limit` from the `offset`-th."""
    rows = await session.scalars(
        select(BulkJobItem)
        .where(BulkJobItem.job_id == job_id, _failed())
        .order_by(BulkJobItem.position)
        .offset(offset)
        .limit(limit)
    )
    return list(rows)


async def count_failed(session: AsyncSession, *, job_id: int) -> int:
    """How many of the job's items failed."""
    counted = await session.scalar(
        select(func.count()).select_from(BulkJobItem).where(BulkJobItem.job_id == job_id, _failed())
    )
    return int(counted or 0)


async def unprocessed_ranges(session: AsyncSession, *, job_id: int, limit: int) -> list[tuple[int, int]]:
    """The first `limit` runs of consecutive positions without a result, as (first, last) positions: a
    position minus its rank among the unprocessed ones is the same along a run (gaps and islands)."""
    unprocessed = (
        select(
            BulkJobItem.position.label("position"),
            (BulkJobItem.position - func.row_number().over(order_by=BulkJobItem.position)).label("run"),
        )
        .where(BulkJobItem.job_id == job_id, BulkJobItem.result.is_(None))
        .subquery()
    )
    first = func.min(unprocessed.c.position)
    rows = await session.execute(
        select(first, func.max(unprocessed.c.position))
        .group_by(unprocessed.c.run)
        .order_by(first)
        .limit(limit)
    )
    return [(int(low), int(high)) for low, high in rows]


async def pending_positions(session: AsyncSession, *, job_id: int, start: int, end: int) -> set[int]:
    """Positions in [start, end) whose result is not written yet."""
    rows = await session.scalars(
        select(BulkJobItem.position).where(
            BulkJobItem.job_id == job_id,
            BulkJobItem.position >= start,
            BulkJobItem.position < end,
            BulkJobItem.result.is_(None),
        )
    )
    return set(rows)


async def write_results(session: AsyncSession, *, job_id: int, results: dict[int, dict[str, Any]]) -> None:
    """Write these items' results (position -> the wire result)."""
    if not results:
        return
    table = cast(Table, BulkJobItem.__table__)
    statement = (
        update(table)
        .where(table.c.job_id == bindparam("b_job_id"), table.c.position == bindparam("b_position"))
        .values(result=bindparam("b_result"))
    )
    await session.execute(
        statement,
        [
            {"b_job_id": job_id, "b_position": position, "b_result": result}
            for position, result in results.items()
        ],
        execution_options={"synchronize_session": False},
    )


async def mark_running(session: AsyncSession, *, job_id: int, now: datetime) -> None:
    """QUEUED -> RUNNING, once."""
    await session.execute(
        update(BulkJob)
        .where(BulkJob.id == job_id, BulkJob.status == QUEUED)
        .values(status=RUNNING, started_at=now)
    )


async def stale_job_ids(session: AsyncSession, *, before: datetime) -> list[int]:
    """QUEUED or RUNNING jobs that wrote no result since `before` (created before it, if none yet)."""
    rows = await session.scalars(
        select(BulkJob.id)
        .where(
            BulkJob.status.in_((QUEUED, RUNNING)),
            func.coalesce(BulkJob.progressed_at, BulkJob.created_at) < before,
        )
        .order_by(BulkJob.id)
    )
    return list(rows)


async def pending_chunks(session: AsyncSession, *, job_id: int, chunk_size: int) -> set[int]:
    """The chunks of the job that hold an item whose result is not written yet."""
    rows = await session.scalars(
        select(BulkJobItem.position // chunk_size)
        .where(BulkJobItem.job_id == job_id, BulkJobItem.result.is_(None))
        .distinct()
    )
    return {int(chunk) for chunk in rows}


async def first_pending(session: AsyncSession, *, job_id: int, limit: int) -> list[BulkJobItem]:
    """Up to `limit` of the job's items without a result, in order."""
    rows = await session.scalars(
        select(BulkJobItem)
        .where(BulkJobItem.job_id == job_id, BulkJobItem.result.is_(None))
        .order_by(BulkJobItem.position)
        .limit(limit)
    )
    return list(rows)


async def unfinished_figures(session: AsyncSession) -> tuple[int, int]:
    """How many jobs are QUEUED or RUNNING, and how many of their items have no result yet."""
    row = (
        await session.execute(
            select(func.count(), func.coalesce(func.sum(BulkJob.total - BulkJob.processed), 0)).where(
                BulkJob.status.in_((QUEUED, RUNNING))
            )
        )
    ).one()
    return int(row[0]), int(row[1])
