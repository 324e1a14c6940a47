"""HTTP route of the event stream (API.md 6)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from m365connect.api.deps import CurrentAccount, SessionDep
from m365connect.api.responses import COMMON, Responses, bad_request
from m365connect.events import service
from m365connect.events.schemas import EventPage
from m365connect.wire import MAX_ID

router = APIRouter(prefix="/rest/v2/events", tags=["Events"])

MAX_LIMIT = 1000
_RESPONSES: Responses = {
    **COMMON,
    **bad_request(
        "Malformed query; `detail` names the parameter",
        "Field 'limit' is invalid: Input should be less than or equal to 1000",
        "Field 'after' is invalid: Input should be greater than or equal to 0",
        "Field 'after' is invalid: Input should be a valid integer, unable to parse string as an integer",
    ),
}


@router.get("", responses=_RESPONSES)
async def list_events(
    session: SessionDep,
    account_id: CurrentAccount,
    after: Annotated[
        int, Query(ge=0, le=MAX_ID, description="Only events with a larger id (the cursor)")
    ] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="At most this many events")] = 100,
) -> EventPage:
    """The account's events after the cursor, oldest first; follow `next_after`."""
    return await service.page_after(session, account_id=account_id, after=after, limit=limit)
