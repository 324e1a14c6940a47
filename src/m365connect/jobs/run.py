"""The `bulk_job.chunk` job kind: one chunk of a job's items through the synchronous bulk path.

A run reads the chunk's items whose result is still null, authorises and verifies them exactly as POST
/bulk does (mailboxes/bulk.py), then writes, in ONE transaction with the job row locked, the mailboxes,
their `mailbox.connected` events, the items' results, the job's counts, the next chunk's engine job and,
for the last item, DONE with `bulk_job.finished`. So after kill -9 a run either left nothing or
everything: a re-run skips written items, and an item is never connected twice nor reported twice. Two
runs of one chunk at once (a lease taken over from a process that was only slow) cannot both write: the
second finds the items written under the lock and discards its work.

Items Microsoft throttled or could not answer (MICROSOFT_THROTTLED, MICROSOFT_UNAVAILABLE, or a token
endpoint that is down) are left null and the chunk runs again after the next of
M365CONNECT_BULK_JOB_WAVE_DELAYS; after the last wave they are written with their code. A credential
refused, expired, deleted or unreadable mid-job fails the chunk's remaining items with
INVALID_CREDENTIAL_ID (or CREDENTIAL_UNREADABLE), and the job goes on: every item gets one result.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from m365connect.codes import ErrorCode
from m365connect.db.base import utcnow
from m365connect.db.transactions import Transactions
from m365connect.errors import ServiceUnavailable, ValidationCodeError
from m365connect.jobs import repository
from m365connect.jobs.models import DONE, FINISHED, BulkJob, BulkJobItem
from m365connect.jobs.service import CHUNK_KIND, JobServices, chunk_payload, finished
from m365connect.mailboxes import bulk
from m365connect.mailboxes.addresses import PlannedItem, plan, with_duplicates
from m365connect.mailboxes.bulk import Verified
from m365connect.mailboxes.schemas import BulkAccount
from m365connect.work.ports import JobKind, JobRun, Payload, Retry

logger = logging.getLogger("m365connect.jobs")

TRANSIENT = frozenset({ErrorCode.MICROSOFT_THROTTLED.value, ErrorCode.MICROSOFT_UNAVAILABLE.value})
# A failure of the run itself (the database went away): the engine runs the chunk again on this schedule.
RUN_RETRY_DELAYS = (1.0, 5.0, 30.0, 120.0, 600.0, 1800.0)


def chunk_job_kind(transactions: Transactions, services: JobServices, *, slots: int | None = None) -> JobKind:
    """The job kind that runs one chunk (idempotent, as the engine's at-least-once delivery requires);
    at most `slots` chunks run at once across all processes (M365CONNECT_BULK_JOB_SLOTS)."""

    async def handle(run: JobRun, payload: Payload) -> None:
        started = time.perf_counter()
        try:
            await run_chunk(
                transactions, services, run=run, job_id=int(payload["job_id"]), chunk=int(payload["chunk"])
            )
        finally:
            services.observer.chunk_ran(time.perf_counter() - started)

    return JobKind(name=CHUNK_KIND, handler=handle, retry_delays=RUN_RETRY_DELAYS, concurrency=slots)


async def run_chunk(
    transactions: Transactions, services: JobServices, *, run: JobRun, job_id: int, chunk: int
) -> None:
    """One wave of one chunk (see the module's docstring)."""
    async with transactions.begin() as session:
        job = await session.get(BulkJob, job_id)
        if job is None or job.status in FINISHED:
            return
        await repository.mark_running(session, job_id=job_id, now=utcnow())
        start = chunk * job.chunk_size
        end = min(start + job.chunk_size, job.total)
        pending = [
            item
            for item in await repository.items_between(session, job_id=job_id, start=start, end=end)
            if item.result is None
        ]
        account_id, credential_id = job.account_id, job.credential_id
    if not pending:
        return  # written by an earlier run, whose transaction also enqueued the next chunk
    last_wave = run.attempt > len(services.wave_delays)
    planned = with_duplicates(
        plan(
            [
                BulkAccount(mailbox_email=item.mailbox_email, display_name=item.display_name)
                for item in pending
            ]
        ),
        [item.duplicate for item in pending],
    )
    verified, refusal = await _verify_chunk(
        transactions,
        services,
        account_id=account_id,
        credential_id=credential_id,
        items=planned,
        last_wave=last_wave,
    )
    if verified is None and refusal is None:
        raise Retry(services.wave_delays[run.attempt - 1], "token endpoint unavailable")
    left, labels = await _write_chunk(
        transactions,
        services,
        job_id=job_id,
        chunk=chunk,
        pending=pending,
        planned=planned,
        verified=verified,
        refusal=refusal,
        last_wave=last_wave,
    )
    services.observer.written(labels)
    if left:
        services.observer.waved()
        logger.info(
            "bulk_job.chunk.wave",
            extra={"job_id": job_id, "chunk": chunk, "left": left, "attempt": run.attempt},
        )
        raise Retry(services.wave_delays[run.attempt - 1], f"{left} items for a later wave")


async def _verify_chunk(
    transactions: Transactions,
    services: JobServices,
    *,
    account_id: int,
    credential_id: int,
    items: list[PlannedItem],
    last_wave: bool,
) -> tuple[Verified | None, ErrorCode | None]:
    """Where a chunk's Microsoft work starts (the one seam for pacing it to Graph's budgets): the
    verification, or the code every item fails with, or (None, None) for a wave to come."""
    try:
        authorised = await bulk.authorise(
            transactions, services.bulk, account_id=account_id, credential_id=credential_id
        )
        verified = await bulk.verify(
            transactions,
            services.bulk,
            account_id=account_id,
            items=items,
            authorised=authorised,
            interactive=False,  # background: a synchronous request of the same app goes first
        )
    except ValidationCodeError as refused:
        return None, refused.code
    except ServiceUnavailable:
        return None, (ErrorCode.MICROSOFT_UNAVAILABLE if last_wave else None)
    return verified, None


async def _write_chunk(
    transactions: Transactions,
    services: JobServices,
    *,
    job_id: int,
    chunk: int,
    pending: list[BulkJobItem],
    planned: list[PlannedItem],
    verified: Verified | None,
    refusal: ErrorCode | None,
    last_wave: bool,
) -> tuple[int, list[str]]:
    """The write phase with the job locked: how many items are left for a later wave, and the metric
    label of each result written (told to the observer once this transaction committed)."""
    positions = [item.position for item in pending]
    async with transactions.begin() as session:
        job = await repository.lock(session, job_id=job_id)
        if job is None or job.status in FINISHED:
            return 0, []  # cancelled meanwhile: nothing more is connected
        start = chunk * job.chunk_size
        still = await repository.pending_positions(
            session, job_id=job_id, start=start, end=min(start + job.chunk_size, job.total)
        )
        if not set(positions) <= still:
            return 0, []  # another run of this chunk wrote these items first
        if verified is None:
            code = refusal or ErrorCode.MICROSOFT_UNAVAILABLE
            wire = [bulk.failure(item, code, name=item.display_name).wire() for item in planned]
        else:
            results = await bulk.write(session, account_id=job.account_id, items=planned, verified=verified)
            wire = [result.wire() for result in results]
        written: dict[int, dict[str, Any]] = {
            position: {**result, "index": position}
            for position, result in zip(positions, wire, strict=True)
            if last_wave or result["error"] not in TRANSIENT
        }
        await repository.write_results(session, job_id=job_id, results=written)
        _count(job, written.values())
        if written:
            job.progressed_at, job.sweeps = utcnow(), 0
        left = len(still) - len(written)
        if left == 0:
            await _next_chunk(session, services, job=job, chunk=chunk)
        if job.processed == job.total:
            job.status, job.finished_at = DONE, utcnow()
            await session.flush()
            await finished(session, job=job, observer=services.observer)
        return left, [result_label(result) for result in written.values()]


def result_label(result: dict[str, Any]) -> str:
    """An item's metric label: `connected`, `already_connected` or its error code."""
    if result["success"]:
        return "already_connected" if result.get("already_connected") else "connected"
    return str(result["error"] or "unknown")


def _count(job: BulkJob, results: Iterable[dict[str, Any]]) -> None:
    for result in results:
        job.processed += 1
        if result["success"]:
            job.connected += 1
        else:
            job.failed += 1


async def _next_chunk(session: AsyncSession, services: JobServices, *, job: BulkJob, chunk: int) -> None:
    """The chunk `concurrency` places further on, so that as many run at once as the setting allows."""
    following = chunk + services.concurrency
    if following * job.chunk_size < job.total:
        payload, key = chunk_payload(job.id, following)
        await services.enqueue(session, CHUNK_KIND, payload, dedupe_key=key)
