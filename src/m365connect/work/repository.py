"""Every SQL statement of the background work: the SQLite queue, periodic schedules, queue statistics.

The SQLite queue's rules (docs/decisions.md): a claim is one `UPDATE ... RETURNING` (SQLite runs one
writer at a time, so no row is claimed twice); a claim holds a lease that the owner's heartbeat extends;
a job whose lease ran out (its process died) is claimable again; every change to a claimed job names
its owner, so a process that lost its lease cannot overwrite the new owner's outcome.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import Select, and_, delete, func, literal, or_, select, text, union_all, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from m365connect.work.models import FAILED, QUEUED, RUNNING, WorkSchedule, jobs
from m365connect.work.ports import Payload


def now_ms() -> int:
    """Wall-clock epoch milliseconds (shared by every process on the host or hosts)."""
    return int(time.time() * 1000)


@dataclass(frozen=True)
class ClaimedJob:
    """A job this process now holds: its row as claimed (`attempts` counts this run)."""

    id: int
    kind: str
    payload: str
    attempts: int


@dataclass(frozen=True)
class KindStats:
    """The queue of one kind: waiting (due or not), running, failed for good, and the oldest due's wait."""

    kind: str
    queued: int
    running: int
    failed: int
    oldest_due_seconds: float


# --- SQLite queue -------------------------------------------------------------------------------------


async def sqlite_enqueue(
    session: AsyncSession, *, kind: str, payload: Payload, delay: float, dedupe_key: str | None
) -> None:
    """Insert a job in the session's transaction; a waiting or running job with the key makes it a no-op."""
    now = now_ms()
    statement = (
        sqlite_insert(jobs)
        .values(
            kind=kind,
            payload=json.dumps(dict(payload), separators=(",", ":")),
            status=QUEUED,
            run_at_ms=now + max(0, round(delay * 1000)),
            attempts=0,
            dedupe_key=dedupe_key,
            created_ms=now,
        )
        .on_conflict_do_nothing()
    )
    await session.execute(statement)


async def sqlite_claim(
    connection: AsyncConnection,
    *,
    owner: str,
    kinds: list[str],
    limit: int,
    lease_ms: int,
    limits: Mapping[str, int] | None = None,
) -> list[ClaimedJob]:
    """Claim up to `limit` due jobs of these kinds, or jobs whose lease ran out (another owner's).

    A kind in `limits` gets no more than its cap minus its jobs running with a live lease in any
    process: the count and the claim are one statement, which SQLite runs under its single writer's
    lock, so two processes claiming at once cannot both take the last free place of a kind.
    """
    now = now_ms()
    caps = limits or {}
    claimable = or_(
        and_(jobs.c.status == QUEUED, jobs.c.run_at_ms <= now),
        and_(jobs.c.status == RUNNING, jobs.c.lease_until_ms < now, jobs.c.owner != owner),
    )
    uncapped = [kind for kind in kinds if kind not in caps]
    parts: list[Select[tuple[int, int]]] = []
    if uncapped:
        parts.append(_oldest(jobs.c.kind.in_(uncapped), claimable, limit))
    for kind in (kind for kind in kinds if kind in caps):
        busy = (
            select(func.count())
            .select_from(jobs)
            .where(jobs.c.kind == kind, jobs.c.status == RUNNING, jobs.c.lease_until_ms >= now)
            .scalar_subquery()
        )
        # max(..., 0): a negative LIMIT is no limit at all in SQLite.
        room = func.max(func.min(literal(caps[kind]) - busy, limit), 0)
        parts.append(_oldest(jobs.c.kind == kind, claimable, room))
    if not parts:
        return []
    candidates = union_all(*(select(part.subquery()) for part in parts)).subquery()
    due = select(candidates.c.id).order_by(candidates.c.run_at_ms, candidates.c.id).limit(limit)
    statement = (
        update(jobs)
        .where(jobs.c.id.in_(due.scalar_subquery()))
        .values(status=RUNNING, owner=owner, lease_until_ms=now + lease_ms, attempts=jobs.c.attempts + 1)
        .returning(jobs.c.id, jobs.c.kind, jobs.c.payload, jobs.c.attempts)
    )
    rows = (await connection.execute(statement)).all()
    return [ClaimedJob(id=row.id, kind=row.kind, payload=row.payload, attempts=row.attempts) for row in rows]


def _oldest(
    of_kinds: ColumnElement[bool], claimable: ColumnElement[bool], limit: int | ColumnElement[int]
) -> Select[tuple[int, int]]:
    """The claimable jobs of these kinds, oldest due first, at most `limit`."""
    return (
        select(jobs.c.id, jobs.c.run_at_ms)
        .where(of_kinds, claimable)
        .order_by(jobs.c.run_at_ms, jobs.c.id)
        .limit(limit)
    )


async def sqlite_heartbeat(connection: AsyncConnection, *, owner: str, ids: list[int], lease_ms: int) -> None:
    """Extend this owner's leases on the jobs it still runs."""
    await connection.execute(
        update(jobs)
        .where(jobs.c.id.in_(ids), jobs.c.owner == owner, jobs.c.status == RUNNING)
        .values(lease_until_ms=now_ms() + lease_ms)
    )


async def sqlite_live_keys(session: AsyncSession, *, keys: Sequence[str]) -> set[str]:
    """The keys of jobs waiting or running (a given-up job is `failed` and no longer holds its key)."""
    rows = await session.scalars(
        select(jobs.c.dedupe_key).where(
            jobs.c.dedupe_key.in_(list(keys)), jobs.c.status.in_((QUEUED, RUNNING))
        )
    )
    return {str(key) for key in rows}


def _held(job_id: int, owner: str) -> ColumnElement[bool]:
    """The job, as long as this owner still holds it."""
    return and_(jobs.c.id == job_id, jobs.c.owner == owner, jobs.c.status == RUNNING)


async def sqlite_finish(connection: AsyncConnection, *, job_id: int, owner: str) -> None:
    """A job done: its row goes (a finished job no longer blocks its dedupe key)."""
    await connection.execute(delete(jobs).where(_held(job_id, owner)))


async def sqlite_reschedule(
    connection: AsyncConnection, *, job_id: int, owner: str, delay: float, error: str, uncount: bool = False
) -> None:
    """Back to waiting, due in `delay` seconds (`uncount`: this run does not count as an attempt)."""
    await connection.execute(
        update(jobs)
        .where(_held(job_id, owner))
        .values(
            status=QUEUED,
            owner=None,
            lease_until_ms=None,
            run_at_ms=now_ms() + max(0, round(delay * 1000)),
            attempts=jobs.c.attempts - 1 if uncount else jobs.c.attempts,
            last_error=error[:300] or None,
        )
    )


async def sqlite_give_up(connection: AsyncConnection, *, job_id: int, owner: str, error: str) -> None:
    """Failed for good: the row stays, `failed`, with the last error (for the operator and the metrics)."""
    await connection.execute(
        update(jobs)
        .where(_held(job_id, owner))
        .values(status=FAILED, owner=None, lease_until_ms=None, last_error=error[:300])
    )


async def sqlite_stats(session: AsyncSession) -> list[KindStats]:
    """Per kind: queued, running, failed, and how long the oldest due job has waited."""
    now = now_ms()
    due = and_(jobs.c.status == QUEUED, jobs.c.run_at_ms <= now)
    statement = select(
        jobs.c.kind,
        func.count().filter(jobs.c.status == QUEUED),
        func.count().filter(jobs.c.status == RUNNING),
        func.count().filter(jobs.c.status == FAILED),
        func.min(jobs.c.run_at_ms).filter(due),
    ).group_by(jobs.c.kind)
    return [
        KindStats(
            kind=kind,
            queued=queued,
            running=running,
            failed=failed,
            oldest_due_seconds=0.0 if oldest is None else max(0.0, (now - oldest) / 1000),
        )
        for kind, queued, running, failed, oldest in (await session.execute(statement)).all()
    ]


# --- PostgreSQL (pgqueuer's table) --------------------------------------------------------------------

_PGQUEUER_STATS = text(
    """
    SELECT entrypoint AS kind,
           count(*) FILTER (WHERE status = 'queued') AS queued,
           count(*) FILTER (WHERE status = 'picked') AS running,
           0 AS failed,
           EXTRACT(EPOCH FROM now() - min(execute_after)
                   FILTER (WHERE status = 'queued' AND execute_after <= now())) AS oldest
    FROM pgqueuer GROUP BY entrypoint
    """
)
# Jobs given up: pgqueuer deletes the row and logs 'exception' in pgqueuer_log.
_PGQUEUER_FAILED = text(
    "SELECT entrypoint, count(*) FROM pgqueuer_log WHERE status = 'exception' GROUP BY entrypoint"
)


_PGQUEUER_LIVE = text(
    "SELECT dedupe_key FROM pgqueuer WHERE dedupe_key = ANY(:keys) AND status IN ('queued', 'picked')"
)


async def pgqueuer_live_keys(session: AsyncSession, *, keys: Sequence[str]) -> set[str]:
    """The keys of pgqueuer's waiting or picked jobs (a job done or given up leaves the table)."""
    return {str(key) for key in await session.scalars(_PGQUEUER_LIVE, {"keys": list(keys)})}


async def pgqueuer_stats(session: AsyncSession) -> list[KindStats]:
    """The same figures from pgqueuer's tables (failed: its log of jobs that ended in an exception)."""
    failed = {str(kind): int(count) for kind, count in (await session.execute(_PGQUEUER_FAILED)).all()}
    rows = (await session.execute(_PGQUEUER_STATS)).all()
    seen = {row.kind for row in rows}
    stats = [
        KindStats(
            kind=row.kind,
            queued=row.queued,
            running=row.running,
            failed=failed.get(row.kind, 0),
            oldest_due_seconds=float(row.oldest or 0.0),
        )
        for row in rows
    ]
    stats += [KindStats(kind, 0, 0, count, 0.0) for kind, count in failed.items() if kind not in seen]
    return stats


async def begin_on_server(session: AsyncSession) -> None:
    """Make the session's transaction real on the server: SQLAlchemy's asyncpg adapter sends BEGIN only
    with its first statement, and a statement sent past SQLAlchemy before that would autocommit."""
    await session.execute(select(1))


# --- periodic schedules (both databases) --------------------------------------------------------------


async def schedule_due(connection: AsyncConnection, *, name: str, first_run_ms: int) -> int:
    """The schedule's next run (created at `first_run_ms` if it has none yet)."""
    found = await connection.scalar(select(WorkSchedule.next_run_ms).where(WorkSchedule.name == name))
    if found is not None:
        return int(found)
    values = {"name": name, "next_run_ms": first_run_ms}
    if connection.dialect.name == "sqlite":
        await connection.execute(sqlite_insert(WorkSchedule).values(values).on_conflict_do_nothing())
    else:
        await connection.execute(pg_insert(WorkSchedule).values(values).on_conflict_do_nothing())
    return int(
        await connection.scalar(select(WorkSchedule.next_run_ms).where(WorkSchedule.name == name)) or 0
    )


async def schedule_advance(connection: AsyncConnection, *, name: str, seen_ms: int, next_ms: int) -> bool:
    """Compare-and-set: move the run at `seen_ms` to `next_ms`; True only for the one process that did."""
    result = await connection.execute(
        update(WorkSchedule)
        .where(WorkSchedule.name == name, WorkSchedule.next_run_ms == seen_ms)
        .values(next_run_ms=next_ms)
    )
    return bool(result.rowcount == 1)


# --- pruning (periodic `work.prune`) -----------------------------------------------------------------

_PGQUEUER_PRUNE = text("DELETE FROM pgqueuer_log WHERE created < now() - make_interval(secs => :seconds)")


async def prune(connection: AsyncConnection, *, keep_seconds: float) -> int:
    """Forget failed jobs (SQLite) or pgqueuer's log lines (PostgreSQL) older than `keep_seconds`."""
    if connection.dialect.name == "sqlite":
        before = now_ms() - round(keep_seconds * 1000)
        result = await connection.execute(
            delete(jobs).where(jobs.c.status == FAILED, jobs.c.created_ms < before)
        )
    else:
        result = await connection.execute(_PGQUEUER_PRUNE, {"seconds": keep_seconds})
    return int(result.rowcount or 0)
