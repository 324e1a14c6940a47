"""HTTP routes of webhook subscriptions (API.md 6)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Path, Query, Response, status

from m365connect.api.deps import CurrentAccount, SessionDep, StateDep
from m365connect.api.responses import COMMON, NOT_FOUND, Responses, bad_request, codes
from m365connect.codes import ErrorCode
from m365connect.webhooks import service
from m365connect.webhooks.schemas import (
    CREATE_EXAMPLES,
    UPDATE_EXAMPLES,
    DeliveryPage,
    WebhookCreate,
    WebhookCreated,
    WebhookList,
    WebhookRead,
    WebhookTestQueued,
    WebhookUpdate,
)
from m365connect.wire import MAX_ID

router = APIRouter(prefix="/rest/v2/webhooks", tags=["Webhooks"])

WebhookId = Annotated[int, Path(ge=1, le=MAX_ID, description="The subscription's id")]

_CREATE: Responses = {
    **COMMON,
    **bad_request(
        "Malformed body; `detail` names the field",
        "Field 'url' is required",
        "Field 'event_types' is invalid: List should have at least 1 item",
        "The request body is not valid JSON",
    ),
    422: codes(
        "Nothing saved; `message` is a code (docs/api.md)",
        ErrorCode.INVALID_WEBHOOK_URL,
        ErrorCode.UNKNOWN_EVENT_TYPE,
        ErrorCode.TOO_MANY_WEBHOOKS,
    ),
}
_UPDATE: Responses = {
    **COMMON,
    **NOT_FOUND,
    **bad_request(
        "Malformed body, an empty object, or null for `url` or `enabled`",
        "Send at least one of 'url', 'event_types', 'description', 'enabled'",
        "Field 'enabled' must not be null",
    ),
    422: codes("Nothing changed", ErrorCode.INVALID_WEBHOOK_URL, ErrorCode.UNKNOWN_EVENT_TYPE),
}
_READ: Responses = {**COMMON, **NOT_FOUND}
_DELIVERIES: Responses = {
    **COMMON,
    **NOT_FOUND,
    **bad_request(
        "Malformed query; `detail` names the parameter",
        "Field 'page' is invalid: Input should be greater than or equal to 0",
    ),
}


@router.get("", responses=COMMON)
async def list_webhooks(session: SessionDep, account_id: CurrentAccount) -> WebhookList:
    """List the account's webhook subscriptions, oldest first (never a secret)."""
    webhooks = await service.list_webhooks(session, account_id=account_id)
    return WebhookList(webhooks=[service.to_read(item) for item in webhooks])


@router.post("", status_code=status.HTTP_201_CREATED, responses=_CREATE)
async def create_webhook(
    body: Annotated[WebhookCreate, Body(openapi_examples=CREATE_EXAMPLES)],
    session: SessionDep,
    state: StateDep,
    account_id: CurrentAccount,
) -> WebhookCreated:
    """Subscribe a URL to events; the answer holds the signing secret, shown only this once."""
    return await service.create_webhook(session, state.webhooks, account_id=account_id, data=body)


@router.get("/{webhook_id}", responses=_READ)
async def get_webhook(webhook_id: WebhookId, session: SessionDep, account_id: CurrentAccount) -> WebhookRead:
    """One webhook subscription (never its secret)."""
    return service.to_read(await service.get_webhook(session, account_id=account_id, webhook_id=webhook_id))


@router.patch("/{webhook_id}", responses=_UPDATE)
async def update_webhook(
    webhook_id: WebhookId,
    body: Annotated[WebhookUpdate, Body(openapi_examples=UPDATE_EXAMPLES)],
    session: SessionDep,
    state: StateDep,
    account_id: CurrentAccount,
) -> WebhookRead:
    """Change a subscription's URL, event types, description or enabled flag."""
    webhook = await service.update_webhook(
        session, state.webhooks, account_id=account_id, webhook_id=webhook_id, data=body
    )
    return service.to_read(webhook)


@router.delete(
    "/{webhook_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response, responses=_READ
)
async def delete_webhook(webhook_id: WebhookId, session: SessionDep, account_id: CurrentAccount) -> None:
    """Delete a subscription and its delivery log; queued deliveries to it end quietly."""
    await service.delete_webhook(session, account_id=account_id, webhook_id=webhook_id)


@router.get("/{webhook_id}/deliveries", responses=_DELIVERIES)
async def list_deliveries(
    webhook_id: WebhookId,
    session: SessionDep,
    account_id: CurrentAccount,
    page: Annotated[int, Query(ge=0, le=10_000_000, description="0-based page number")] = 0,
) -> DeliveryPage:
    """The subscription's delivery attempts, 50 per page, newest first."""
    return await service.deliveries(session, account_id=account_id, webhook_id=webhook_id, page=page)


@router.post("/{webhook_id}/test", status_code=status.HTTP_202_ACCEPTED, responses=_READ)
async def test_webhook(
    webhook_id: WebhookId, session: SessionDep, state: StateDep, account_id: CurrentAccount
) -> WebhookTestQueued:
    """Queue a `webhook.test` event for this subscription only (its deliveries show the outcome)."""
    event_id = await service.send_test(session, state.webhooks, account_id=account_id, webhook_id=webhook_id)
    return WebhookTestQueued(event_id=event_id)
