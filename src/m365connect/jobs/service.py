"""Bulk jobs (API.md 7): start one (the request-level 422s first, then the input stored with the job and
its first chunks in one transaction), read, list, cancel, and page through results."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import TypeAdapter
from sqlalchemy import event
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from m365connect.codes import ErrorCode
from m365connect.db.base import utcnow
from m365connect.db.transactions import Transactions
from m365connect.errors import NotFound, ValidationCodeError
from m365connect.events.service import record_event
from m365connect.events.types import EventType
from m365connect.jobs import repository
from m365connect.jobs.models import CANCELLED, FINISHED, BulkJob
from m365connect.jobs.schemas import BulkJobPage, BulkJobRead, BulkJobResultPage
from m365connect.mailboxes import bulk
from m365connect.mailboxes.addresses import planned
from m365connect.mailboxes.bulk import BulkServices
from m365connect.mailboxes.schemas import BulkAccount, BulkRequest, PaginationData
from m365connect.wire import iso_z
from m365connect.work.ports import Enqueue, LiveKeys

if TYPE_CHECKING:
    from m365connect.state import AppState

CHUNK_KIND = "bulk_job.chunk"
IDEMPOTENCY_WINDOW = timedelta(hours=24)
JOBS_PAGE_SIZE = 50
RESULTS_PAGE_SIZE = 500
HASH_BATCH = 1000
_ACCOUNTS = TypeAdapter(list[BulkAccount])


class JobObserver(Protocol):
    """Told what bulk jobs do, each fact once its transaction committed (observability/job_metrics.py)."""

    def started(self) -> None: ...
    def finished(self, status: str) -> None: ...
    def written(self, results: Iterable[str]) -> None: ...
    def waved(self) -> None: ...
    def chunk_ran(self, seconds: float) -> None: ...
    def swept(self, action: str) -> None: ...


class Unobserved:
    """A JobObserver that keeps nothing."""

    def started(self) -> None:
        pass

    def finished(self, status: str) -> None:
        pass

    def written(self, results: Iterable[str]) -> None:
        pass

    def waved(self) -> None:
        pass

    def chunk_ran(self, seconds: float) -> None:
        pass

    def swept(self, action: str) -> None:
        pass


@dataclass(frozen=True)
class JobServices:
    """What bulk jobs need besides the session: the bulk path, the engine, and the job settings."""

    bulk: BulkServices
    enqueue: Enqueue
    max_accounts: int  # M365CONNECT_MAX_ACCOUNTS_PER_JOB
    chunk_size: int  # M365CONNECT_BULK_JOB_CHUNK_SIZE
    concurrency: int  # M365CONNECT_BULK_JOB_CONCURRENCY: chunks of one job in flight
    wave_delays: tuple[float, ...]  # M365CONNECT_BULK_JOB_WAVE_DELAYS
    live: LiveKeys  # which chunks still have an engine job (the sweeper's question)
    sweep_grace: float = 600.0  # M365CONNECT_BULK_JOB_SWEEP_GRACE_SECONDS
    sweep_limit: int = 3  # M365CONNECT_BULK_JOB_SWEEP_LIMIT
    observer: JobObserver = field(default_factory=Unobserved)


def chunk_payload(job_id: int, chunk: int) -> tuple[dict[str, int], str]:
    """The engine job of one chunk: its payload and its dedupe key."""
    return {"job_id": job_id, "chunk": chunk}, f"bulk_job:{job_id}:{chunk}"


def body_hash(request: BulkRequest) -> str:
    """The body as parsed (so key order and spacing do not count), hashed: SHA-256 of its canonical JSON
    (sorted keys, no spaces), fed HASH_BATCH accounts at a time rather than built whole (100,000
    accounts made 35 MB of transient objects)."""
    digest = hashlib.sha256(b'{"accounts":[')
    accounts = request.accounts
    for start in range(0, len(accounts), HASH_BATCH):
        if start:
            digest.update(b",")
        batch = _ACCOUNTS.dump_python(accounts[start : start + HASH_BATCH], mode="json")
        digest.update(_canonical(batch)[1:-1])  # the list's items without its brackets
    # "accounts" sorts before every other field of the request, so the rest follows the list.
    rest = _canonical(request.model_dump(mode="json", exclude={"accounts"}))
    digest.update(b"]," + rest[1:] if rest != b"{}" else b"]}")
    return digest.hexdigest()


def _canonical(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


async def start_job(
    transactions: Transactions,
    services: JobServices,
    *,
    account_id: int,
    request: BulkRequest,
    idempotency_key: str | None,
    retry_of: int | None = None,
) -> BulkJob:
    """The request-level 422s (or the replayed job), then a new QUEUED job with its input stored;
    `retry_of`: the job whose failed rows this one retries (the console's "retry the failed ones")."""
    bulk.check_request(request, max_accounts=services.max_accounts)
    digest = body_hash(request)
    if idempotency_key is not None:
        async with transactions.begin() as session:
            replayed = await _replay(session, account_id=account_id, key=idempotency_key, digest=digest)
        if replayed is not None:
            return replayed
    authorised = await bulk.authorise(
        transactions, services.bulk, account_id=account_id, credential_id=request.credential_id
    )
    async with transactions.begin() as session:
        job = BulkJob(
            account_id=account_id,
            credential_id=authorised.credential.id,
            total=len(request.accounts),
            chunk_size=services.chunk_size,
            idempotency_key=idempotency_key,
            body_hash=digest,
            retry_of=retry_of,
        )
        try:
            async with session.begin_nested():
                await repository.insert_job(session, job=job)
        except IntegrityError:
            # Another request with this key committed its job meanwhile: that one is the answer.
            assert idempotency_key is not None  # only the key is unique
            replayed = await _replay(session, account_id=account_id, key=idempotency_key, digest=digest)
            if replayed is None:
                raise
            return replayed
        await _store_input(session, services, job=job, request=request)
    services.observer.started()
    return job


async def _replay(session: AsyncSession, *, account_id: int, key: str, digest: str) -> BulkJob | None:
    """The job this key made within 24 h (422 for another body); an older one's key is freed."""
    existing = await repository.by_key(session, account_id=account_id, key=key)
    if existing is None:
        return None
    if existing.created_at < utcnow() - IDEMPOTENCY_WINDOW:
        await repository.release_key(session, job_id=existing.id)
        return None
    if existing.body_hash != digest:
        raise ValidationCodeError(ErrorCode.IDEMPOTENCY_KEY_REUSED)
    return existing


async def _store_input(
    session: AsyncSession, services: JobServices, *, job: BulkJob, request: BulkRequest
) -> None:
    """The items (flagging addresses seen earlier in the job) and the first chunks' engine jobs; the rows
    are made one batch at a time as they are inserted (repository.insert_items)."""
    rows = (
        {
            "job_id": job.id,
            "position": position,
            "mailbox_email": account.mailbox_email,
            "display_name": account.display_name,
            "duplicate": item.error is ErrorCode.DUPLICATE_EMAIL,
        }
        for position, (account, item) in enumerate(
            zip(request.accounts, planned(request.accounts), strict=True)
        )
    )
    await repository.insert_items(session, rows=rows)
    for chunk in range(min(services.concurrency, math.ceil(job.total / job.chunk_size))):
        payload, key = chunk_payload(job.id, chunk)
        await services.enqueue(session, CHUNK_KIND, payload, dedupe_key=key)


def to_read(job: BulkJob) -> BulkJobRead:
    """The wire shape of a job."""
    return BulkJobRead(
        job_id=job.id,
        status=job.status,
        credential_id=job.credential_id,
        total=job.total,
        processed=job.processed,
        connected=job.connected,
        failed=job.failed,
        created_at=iso_z(job.created_at) or "",
        started_at=iso_z(job.started_at),
        finished_at=iso_z(job.finished_at),
    )


async def get_job(session: AsyncSession, *, account_id: int, job_id: int) -> BulkJob:
    """One of the account's jobs, or 404."""
    job = await repository.get_for_account(session, account_id=account_id, job_id=job_id)
    if job is None:
        raise NotFound()
    return job


async def list_page(session: AsyncSession, *, account_id: int, page: int) -> BulkJobPage:
    """Page `page` (0-based) of the account's jobs, newest first."""
    rows, total = await repository.page_for_account(
        session, account_id=account_id, offset=page * JOBS_PAGE_SIZE, limit=JOBS_PAGE_SIZE
    )
    return BulkJobPage(
        content=[to_read(row) for row in rows], pagination_data=_pagination(total, page, JOBS_PAGE_SIZE)
    )


async def cancel(
    session: AsyncSession, *, account_id: int, job_id: int, observer: JobObserver | None = None
) -> BulkJob:
    """QUEUED or RUNNING -> CANCELLED (chunks stop at their next write); 422 for a finished job."""
    await get_job(session, account_id=account_id, job_id=job_id)
    job = await repository.lock(session, job_id=job_id)
    if job is None:
        raise NotFound()
    if job.status in FINISHED:
        raise ValidationCodeError(ErrorCode.JOB_ALREADY_FINISHED)
    job.status, job.finished_at = CANCELLED, utcnow()
    await session.flush()
    await finished(session, job=job, observer=observer)
    return job


async def finished(session: AsyncSession, *, job: BulkJob, observer: JobObserver | None = None) -> None:
    """`bulk_job.finished` with the job object, in the transaction that finished it (the observer is told
    when that transaction commits)."""
    data = to_read(job).model_dump(mode="json")
    await record_event(session, account_id=job.account_id, type=EventType.BULK_JOB_FINISHED, data=data)
    if observer is not None:
        status = job.status
        event.listen(session.sync_session, "after_commit", lambda _: observer.finished(status), once=True)


async def results_page(
    session: AsyncSession, *, account_id: int, job_id: int, page: int
) -> BulkJobResultPage:
    """Positions page*500 .. page*500+499 of the job: those processed, in request order."""
    job = await get_job(session, account_id=account_id, job_id=job_id)
    start = page * RESULTS_PAGE_SIZE
    items = await repository.items_between(session, job_id=job.id, start=start, end=start + RESULTS_PAGE_SIZE)
    return BulkJobResultPage(
        content=[item.result for item in items if item.result is not None],
        pagination_data=_pagination(job.total, page, RESULTS_PAGE_SIZE),
    )


@dataclass(frozen=True)
class JobRow:
    """One submitted item of a job as submitted, with its result (None until processed, or never if the
    job was cancelled first)."""

    position: int
    mailbox_email: str
    display_name: str | None
    result: dict[str, Any] | None


async def rows_page(session: AsyncSession, *, account_id: int, job_id: int, page: int) -> list[JobRow]:
    """Positions page*500 .. page*500+499 of the job, processed or not, in request order (the console's
    results page and its results CSV, one row per submitted row)."""
    job = await get_job(session, account_id=account_id, job_id=job_id)
    start = page * RESULTS_PAGE_SIZE
    items = await repository.items_between(session, job_id=job.id, start=start, end=start + RESULTS_PAGE_SIZE)
    return [JobRow(item.position, item.mailbox_email, item.display_name, item.result) for item in items]


async def failed_rows_page(
    session: AsyncSession, *, account_id: int, job_id: int, page: int
) -> tuple[list[JobRow], int]:
    """Page `page` (0-based, 500 a page) of the job's failed rows in request order, and how many failed
    (the console's "failed rows only")."""
    job = await get_job(session, account_id=account_id, job_id=job_id)
    items = await repository.failed_items(
        session, job_id=job.id, offset=page * RESULTS_PAGE_SIZE, limit=RESULTS_PAGE_SIZE
    )
    total = await repository.count_failed(session, job_id=job.id)
    return [
        JobRow(item.position, item.mailbox_email, item.display_name, item.result) for item in items
    ], total


async def unprocessed_ranges(
    session: AsyncSession, *, account_id: int, job_id: int, limit: int = 20
) -> list[tuple[int, int]]:
    """The first `limit` runs of rows left without a result (a cancelled job's rows never processed), as
    1-based (first, last) row numbers."""
    job = await get_job(session, account_id=account_id, job_id=job_id)
    runs = await repository.unprocessed_ranges(session, job_id=job.id, limit=limit)
    return [(first + 1, last + 1) for first, last in runs]


async def failed_accounts(
    session: AsyncSession, *, account_id: int, job_id: int, use_primary: bool
) -> list[BulkAccount]:
    """The job's failed items as a new request's accounts, in request order, each with the display name
    it was submitted with; with `use_primary`, a WRONG_ALIAS item is the primary address Microsoft
    reported for it (the console's "retry the failed ones"). Items not processed (a cancelled job) are
    not failed and are left out."""
    job = await get_job(session, account_id=account_id, job_id=job_id)
    accounts: list[BulkAccount] = []
    for start in range(0, job.total, RESULTS_PAGE_SIZE):
        for item in await repository.items_between(
            session, job_id=job.id, start=start, end=start + RESULTS_PAGE_SIZE
        ):
            result = item.result
            if result is None or result.get("success"):
                continue
            email = item.mailbox_email
            primary = result.get("primary_email")
            if use_primary and result.get("error") == ErrorCode.WRONG_ALIAS and isinstance(primary, str):
                email = primary
            accounts.append(BulkAccount(mailbox_email=email, display_name=item.display_name))
    return accounts


async def unfinished_jobs(state: AppState) -> tuple[int, int]:
    """QUEUED or RUNNING jobs and their items without a result, across accounts (for /metrics)."""
    async with state.sessions() as session:
        return await repository.unfinished_figures(session)


def _pagination(total: int, page: int, size: int) -> PaginationData:
    return PaginationData(
        total_elements=total,
        total_pages=math.ceil(total / size),
        current_page_number=page + 1,
        page_size=size,
    )
