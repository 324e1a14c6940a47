"""HTTP routes of Microsoft mailboxes: bulk connection (API.md §3) and reads (§4)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Response, status
from fastapi.responses import JSONResponse

from m365connect.api_docs import COMMON, NOT_FOUND, GenericErrorBody, Responses, ValidationMessage
from m365connect.api_errors import EmptyBadRequestRoute
from m365connect.deps import CurrentAccount, SessionDep, StateDep
from m365connect.mailboxes import bulk, service
from m365connect.mailboxes.schemas import BulkRequest, BulkResult, MailboxPage, MailboxRead

router = APIRouter(prefix="/rest/v2/mailboxes/microsoft", tags=["Microsoft mailboxes"])

MailboxId = Annotated[int, Path(ge=1, le=2**63 - 1, description="The mailbox's id")]
_BULK_RESPONSES: Responses = {
    **COMMON,
    201: {"model": list[BulkResult], "description": "All submitted mailboxes were connected"},
    207: {"model": list[BulkResult], "description": "At least one mailbox could not be connected"},
    400: {"description": "Invalid or empty JSON request body (no body)"},
    422: {"model": ValidationMessage, "description": "The batch cannot be processed; `message` is a code"},
    503: {"model": GenericErrorBody, "description": "Microsoft could not be reached; nothing was connected"},
}


async def add_mailboxes_in_bulk(
    body: BulkRequest, session: SessionDep, state: StateDep, account_id: CurrentAccount
) -> JSONResponse:
    """Connect Microsoft mailboxes with Microsoft Graph app-only authentication."""
    results = await bulk.connect_bulk(session, state.bulk_services, account_id=account_id, request=body)
    code = status.HTTP_201_CREATED if all(item.success for item in results) else status.HTTP_207_MULTI_STATUS
    return JSONResponse([item.wire() for item in results], status_code=code)


router.add_api_route(
    "/bulk",
    add_mailboxes_in_bulk,
    methods=["POST"],
    status_code=status.HTTP_201_CREATED,
    response_class=JSONResponse,
    responses=_BULK_RESPONSES,
    route_class_override=EmptyBadRequestRoute,
)


@router.get("", responses=COMMON)
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
