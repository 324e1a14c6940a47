"""The `bulk_jobs.sweep` periodic task: jobs left RUNNING because the engine gave up on a chunk.

A chunk's engine job runs again on RUN_RETRY_DELAYS (about 43 minutes in all) when its run fails for a
reason that is not Microsoft's (the database unreachable, a bug); after the last it is given up, its
items stay without a result and nothing would ever finish the job. The sweep finds QUEUED or RUNNING
jobs that wrote no result for M365CONNECT_BULK_JOB_SWEEP_GRACE_SECONDS and, with the job row locked,
asks the engine which of their next chunks (the first chunk with pending items of each of the
`concurrency` chains, see run._next_chunk) still has a job, waiting, retrying or running. A chunk
without one is queued again (a fresh set of waves), up to M365CONNECT_BULK_JOB_SWEEP_LIMIT times
without a result written in between; past that, every item still without a result is written with
JOB_ITEM_NOT_PROCESSED (or its own local code) and the job ends DONE with `bulk_job.finished`.

Safe across processes: the periodic task runs once per period across all of them; two sweeps at once
still serialise on the job row lock, and the second finds the chunk's new engine job live (and the
enqueue's dedupe key would make a second one a no-op anyway). A slow chunk that is running has a live
engine job (its lease, or pgqueuer's `picked` row, until another process takes it over) and is left
alone, whatever the grace.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from m365connect.codes import ErrorCode
from m365connect.db.base import utcnow
from m365connect.db.transactions import Transactions
from m365connect.jobs import repository
from m365connect.jobs.models import DONE, FINISHED, BulkJob
from m365connect.jobs.run import result_label
from m365connect.jobs.service import CHUNK_KIND, JobServices, chunk_payload, finished
from m365connect.mailboxes import bulk
from m365connect.mailboxes.addresses import plan, with_duplicates
from m365connect.mailboxes.schemas import BulkAccount

logger = logging.getLogger("m365connect.jobs")

SWEEP_TASK = "bulk_jobs.sweep"
REQUEUED, ABANDONED = "requeued", "abandoned"
# Items given their final result per statement when a job is abandoned.
ABANDON_BATCH = 1000


async def sweep_stuck_jobs(transactions: Transactions, services: JobServices) -> dict[int, str]:
    """One pass: each stuck job's action (REQUEUED or ABANDONED), by job id."""
    before = utcnow() - timedelta(seconds=services.sweep_grace)
    async with transactions.begin() as session:
        candidates = await repository.stale_job_ids(session, before=before)
    actions: dict[int, str] = {}
    for job_id in candidates:
        async with transactions.begin() as session:
            action, labels = await _sweep_one(session, services, job_id=job_id, before=before)
        if action is not None:
            actions[job_id] = action
            services.observer.swept(action)
            services.observer.written(labels)
    return actions


async def _sweep_one(
    session: AsyncSession, services: JobServices, *, job_id: int, before: datetime
) -> tuple[str | None, list[str]]:
    job = await repository.lock(session, job_id=job_id)
    if job is None or job.status in FINISHED or (job.progressed_at or job.created_at) >= before:
        return None, []  # finished, or it wrote a result since the list was read
    pending = await repository.pending_chunks(session, job_id=job_id, chunk_size=job.chunk_size)
    heads = sorted(chunk for chunk in pending if chunk - services.concurrency not in pending)
    keys = {chunk_payload(job_id, chunk)[1]: chunk for chunk in heads}
    live = await services.live(session, list(keys))
    dead = [chunk for key, chunk in keys.items() if key not in live]
    if not dead:
        return None, []  # every next chunk has an engine job: slow, waiting for a wave, or taken over later
    if job.sweeps < services.sweep_limit:
        for chunk in dead:
            payload, key = chunk_payload(job_id, chunk)
            await services.enqueue(session, CHUNK_KIND, payload, dedupe_key=key)
        job.sweeps += 1
        logger.warning(
            "bulk_job.swept",
            extra={"job_id": job_id, "action": REQUEUED, "chunks": dead, "sweeps": job.sweeps},
        )
        return REQUEUED, []
    labels = await _abandon(session, services, job=job)
    logger.error(
        "bulk_job.swept",
        extra={"job_id": job_id, "action": ABANDONED, "chunks": dead, "items": len(labels)},
    )
    return ABANDONED, labels


async def _abandon(session: AsyncSession, services: JobServices, *, job: BulkJob) -> list[str]:
    """Every item without a result gets one (its local code, else JOB_ITEM_NOT_PROCESSED); DONE."""
    labels: list[str] = []
    while items := await repository.first_pending(session, job_id=job.id, limit=ABANDON_BATCH):
        planned = with_duplicates(
            plan([BulkAccount(mailbox_email=i.mailbox_email, display_name=i.display_name) for i in items]),
            [item.duplicate for item in items],
        )
        results: dict[int, dict[str, Any]] = {
            item.position: {
                **bulk.failure(
                    one, one.error or ErrorCode.JOB_ITEM_NOT_PROCESSED, name=one.display_name
                ).wire(),
                "index": item.position,
            }
            for item, one in zip(items, planned, strict=True)
        }
        await repository.write_results(session, job_id=job.id, results=results)
        job.processed += len(results)
        job.failed += len(results)
        labels += [result_label(result) for result in results.values()]
        await session.flush()
    job.status, job.finished_at = DONE, utcnow()
    await session.flush()
    await finished(session, job=job, observer=services.observer)
    return labels
