"""HTTP routes of bulk jobs (API.md 7); a job is started by POST /bulk with `Prefer: respond-async`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from m365connect.api.deps import CurrentAccount, SessionDep, StateDep
from m365connect.api.responses import COMMON, NOT_FOUND, Responses, bad_request, codes
from m365connect.codes import ErrorCode
from m365connect.jobs import service
from m365connect.jobs.schemas import BulkJobPage, BulkJobRead, BulkJobResultPage
from m365connect.wire import MAX_ID

router = APIRouter(prefix="/rest/v2/mailboxes/microsoft/bulk/jobs", tags=["Bulk jobs"])

JobId = Annotated[int, Path(ge=1, le=MAX_ID, description="The job's id")]
Page = Annotated[int, Query(ge=0, le=10_000_000, description="0-based page number")]
_PAGED: Responses = {
    **COMMON,
    **bad_request(
        "Malformed query; `detail` names the parameter",
        "Field 'page' is invalid: Input should be greater than or equal to 0",
    ),
}


@router.get("", responses=_PAGED)
async def list_bulk_jobs(session: SessionDep, account_id: CurrentAccount, page: Page = 0) -> BulkJobPage:
    """List the account's bulk jobs, 50 per page, newest first."""
    return await service.list_page(session, account_id=account_id, page=page)


@router.get("/{job_id}", responses={**COMMON, **NOT_FOUND})
async def get_bulk_job(job_id: JobId, session: SessionDep, account_id: CurrentAccount) -> BulkJobRead:
    """One bulk job: status, counts and times."""
    return service.to_read(await service.get_job(session, account_id=account_id, job_id=job_id))


@router.delete(
    "/{job_id}",
    responses={
        **COMMON,
        **NOT_FOUND,
        422: codes("The job is DONE or CANCELLED already", ErrorCode.JOB_ALREADY_FINISHED),
    },
)
async def cancel_bulk_job(
    job_id: JobId, session: SessionDep, account_id: CurrentAccount, state: StateDep
) -> BulkJobRead:
    """Cancel a QUEUED or RUNNING job: no item is connected after this answer; what is connected stays."""
    cancelled = await service.cancel(
        session, account_id=account_id, job_id=job_id, observer=state.jobs.observer
    )
    return service.to_read(cancelled)


@router.get("/{job_id}/results", responses={**_PAGED, **NOT_FOUND})
async def list_bulk_job_results(
    job_id: JobId, session: SessionDep, account_id: CurrentAccount, page: Page = 0
) -> BulkJobResultPage:
    """Results of positions page*500 to page*500+499, in request order; items not yet processed are absent."""
    return await service.results_page(session, account_id=account_id, job_id=job_id, page=page)
