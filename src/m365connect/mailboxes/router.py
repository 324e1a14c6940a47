"""HTTP routes of Microsoft mailboxes: bulk connection (API.md §3) and reads (§4)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Body, Header, Path, Query, Request, Response, status
from fastapi.responses import JSONResponse

from m365connect.api.deps import CurrentAccount, SessionDep, StateDep, TransactionsDep
from m365connect.api.error_handlers import EmptyBadRequestRoute
from m365connect.api.prefer import RESPOND_ASYNC, prefers_respond_async
from m365connect.api.responses import (
    COMMON,
    MICROSOFT_UNAVAILABLE,
    NOT_FOUND,
    Responses,
    bad_request,
    codes,
    example,
)
from m365connect.codes import ErrorCode
from m365connect.jobs import service as jobs
from m365connect.jobs.schemas import BulkJobRead
from m365connect.mailboxes import bulk, service
from m365connect.mailboxes.schemas import (
    BULK_CREATED_EXAMPLE,
    BULK_EXAMPLES,
    BULK_MULTI_STATUS_EXAMPLE,
    BulkRequest,
    BulkResult,
    MailboxPage,
    MailboxRead,
)
from m365connect.observability import MetricsDep
from m365connect.wire import MAX_ID

router = APIRouter(prefix="/rest/v2/mailboxes/microsoft", tags=["Microsoft mailboxes"])

JOBS_PATH = "/rest/v2/mailboxes/microsoft/bulk/jobs"
MailboxId = Annotated[int, Path(ge=1, le=MAX_ID, description="The mailbox's id")]
_BULK_RESPONSES: Responses = {
    **COMMON,
    201: {
        "model": list[BulkResult],
        "description": "All submitted mailboxes were connected (one result per item, in request order)",
        "content": {"application/json": {"example": example(BULK_CREATED_EXAMPLE)}},
    },
    207: {
        "model": list[BulkResult],
        "description": "At least one mailbox could not be connected (also when none could)",
        "content": {"application/json": {"example": example(BULK_MULTI_STATUS_EXAMPLE)}},
    },
    400: {"description": "Invalid or empty JSON request body (the answer has no body)"},
    422: codes(
        "The batch cannot be processed, nothing was connected; `message` is a code",
        ErrorCode.UNSUPPORTED_AUTH_TYPE,
        ErrorCode.EMPTY_ACCOUNTS,
        ErrorCode.TOO_MANY_ACCOUNTS,
        ErrorCode.INVALID_CREDENTIAL_ID,
        ErrorCode.CREDENTIAL_UNREADABLE,
        ErrorCode.CREDENTIAL_ID_REQUIRED,
        ErrorCode.NO_VALID_CREDENTIAL,
        ErrorCode.IDEMPOTENCY_KEY_REUSED,
    ),
    202: {
        "model": BulkJobRead,
        "description": "With `Prefer: respond-async`: a job was started (or replayed by its "
        "Idempotency-Key); `Location` names it",
    },
    **MICROSOFT_UNAVAILABLE,
}
_LIST_RESPONSES: Responses = {
    **COMMON,
    **bad_request(
        "Malformed query; `detail` names the parameter",
        "Field 'page' is invalid: Input should be greater than or equal to 0",
    ),
}


async def add_mailboxes_in_bulk(
    body: Annotated[BulkRequest, Body(openapi_examples=BULK_EXAMPLES)],
    request: Request,
    transactions: TransactionsDep,
    state: StateDep,
    account_id: CurrentAccount,
    metrics: MetricsDep,
    prefer: Annotated[
        str | None,
        Header(description="`respond-async` (RFC 7240) starts a job (up to MAX_ACCOUNTS_PER_JOB items)"),
    ] = None,
    idempotency_key: Annotated[
        str | None,
        Header(
            min_length=1,
            max_length=255,
            description="With respond-async: the same key and body within 24 h answer the same job",
        ),
    ] = None,
) -> JSONResponse:
    """Connect Microsoft mailboxes with Microsoft Graph app-only authentication."""
    if prefer is not None and prefers_respond_async(request.headers.getlist("prefer")):
        job = await jobs.start_job(
            transactions, state.jobs, account_id=account_id, request=body, idempotency_key=idempotency_key
        )
        return JSONResponse(
            jobs.to_read(job).model_dump(mode="json"),
            status_code=status.HTTP_202_ACCEPTED,
            headers={"Location": f"{JOBS_PATH}/{job.id}", "Preference-Applied": RESPOND_ASYNC},
        )
    with metrics.bulk.request(len(body.accounts)) as record:
        results = await bulk.connect_bulk(
            transactions, state.bulk_services, account_id=account_id, request=body
        )
        success = all(item.success for item in results)
        code = status.HTTP_201_CREATED if success else status.HTTP_207_MULTI_STATUS
        record.answered(code, (_result_label(item) for item in results))
    return JSONResponse([item.wire() for item in results], status_code=code)


def _result_label(item: BulkResult) -> str:
    if item.success:
        return "already_connected" if item.already_connected else "connected"
    return item.error or "unknown"


router.add_api_route(
    "/bulk",
    add_mailboxes_in_bulk,
    methods=["POST"],
    status_code=status.HTTP_201_CREATED,
    response_class=JSONResponse,
    responses=_BULK_RESPONSES,
    route_class_override=EmptyBadRequestRoute,
)


@router.get("", responses=_LIST_RESPONSES)
async def list_mailboxes(
    session: SessionDep,
    account_id: CurrentAccount,
    page: Annotated[int, Query(ge=0, le=10_000_000, description="0-based page number")] = 0,
    status_filter: Annotated[
        Literal["ACTIVE", "DISCONNECTED"] | None, Query(alias="status", description="Only this status")
    ] = None,
) -> MailboxPage:
    """List the account's Microsoft mailboxes, 50 per page, oldest first."""
    return await service.list_page(session, account_id=account_id, page=page, status=status_filter)


@router.get("/{mailbox_id}", responses={**COMMON, **NOT_FOUND})
async def get_mailbox(mailbox_id: MailboxId, session: SessionDep, account_id: CurrentAccount) -> MailboxRead:
    """One Microsoft mailbox."""
    return service.to_read(await service.get_mailbox(session, account_id=account_id, mailbox_id=mailbox_id))


@router.delete(
    "/{mailbox_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses={**COMMON, **NOT_FOUND},
)
async def disconnect_mailbox(mailbox_id: MailboxId, session: SessionDep, account_id: CurrentAccount) -> None:
    """Disconnect a mailbox; it no longer blocks its credential's deletion and can be connected again."""
    await service.disconnect(session, account_id=account_id, mailbox_id=mailbox_id)
