"""The webhooks page: the account's subscriptions; add one (its `whsec_` secret shown once, on the page the
POST redirects to, never in a URL or a log); edit its URL, event types and description; enable, disable,
delete after a confirmation, send a test event; each subscription's delivery log, paged. Everything goes
through webhooks.service, as the API's routes do: its refusals (INVALID_WEBHOOK_URL, UNKNOWN_EVENT_TYPE,
TOO_MANY_WEBHOOKS) are shown next to their field."""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import APIRouter, Request, status
from fastapi.responses import Response
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import FormData

from m365connect.api.deps import StateDep
from m365connect.codes import ErrorCode
from m365connect.console import service as console
from m365connect.console.forms import (
    FORM,
    FormState,
    explained,
    new_form_key,
    posted_form_key,
    validation_errors,
)
from m365connect.console.service import Signed
from m365connect.console.web import PREFIX, CsrfChecked, SignedIn, find, not_found, page, redirect
from m365connect.errors import AppError, BadRequest, NotFound, ValidationCodeError
from m365connect.events.types import SUBSCRIBABLE
from m365connect.state import AppState
from m365connect.webhooks import service
from m365connect.webhooks.schemas import WebhookCreate, WebhookRead, WebhookUpdate

router = APIRouter(prefix=f"{PREFIX}/webhooks")
EVENT_TYPES = tuple(sorted(SUBSCRIBABLE))
CODE_FIELDS: Mapping[str, str] = {
    ErrorCode.INVALID_WEBHOOK_URL: "url",
    ErrorCode.UNKNOWN_EVENT_TYPE: "event_types",
    ErrorCode.TOO_MANY_WEBHOOKS: FORM,
}
DONE = {
    "edited": "The subscription was changed.",
    "enabled": "The subscription was enabled: it receives the events that happen from now on.",
    "disabled": "The subscription was disabled: nothing is sent to it until it is enabled again.",
    "deleted": "The subscription was deleted.",
}
_MAX_PAGE = 10_000_000


def create_body(values: Mapping[str, str], event_types: list[str]) -> WebhookCreate:
    """The creation request from the add form: no box ticked means every type (raises ValidationError)."""
    data: dict[str, object] = {"url": values.get("url", "")}
    if event_types:
        data["event_types"] = event_types
    if description := values.get("description", ""):
        data["description"] = description
    return WebhookCreate.model_validate(data)


def update_body(values: Mapping[str, str], event_types: list[str]) -> WebhookUpdate:
    """The change request from the edit form: URL, event types (none ticked: every type, as null) and
    description (empty: none, as null), all three sent, as a PATCH of them (raises ValidationError)."""
    return WebhookUpdate.model_validate(
        {
            "url": values.get("url", ""),
            "event_types": event_types or None,
            "description": values.get("description", "") or None,
        }
    )


def _typed(form: FormData) -> tuple[dict[str, str], list[str]]:
    """The URL, description and ticked event types of an add or edit form, as typed."""
    values = {name: value for name in ("url", "description") if isinstance(value := form.get(name, ""), str)}
    return values, [value for value in form.getlist("event_types") if isinstance(value, str)]


def refusal_errors(exc: AppError) -> dict[str, str]:
    """A refusal of the service next to the field it is about, with docs/errors.md's meaning and fix."""
    if isinstance(exc, ValidationCodeError):
        return {CODE_FIELDS.get(exc.code, FORM): f"{exc.code}: {explained(exc.code)}"}
    if isinstance(exc, BadRequest):
        return {FORM: exc.detail}
    raise exc


async def _list_page(
    request: Request, state: AppState, signed: Signed, *, add: FormState | None = None, status_code: int = 200
) -> Response:
    async with state.sessions() as session:
        rows = await service.list_webhooks(session, account_id=signed.account_id)
        webhooks = [service.to_read(row) for row in rows]
    return page(
        request,
        "webhooks.html",
        signed=signed,
        status_code=status_code,
        title="Webhooks",
        webhooks=webhooks,
        add=add or FormState(),
        event_types=EVENT_TYPES,
        maximum=service.MAX_WEBHOOKS_PER_ACCOUNT,
        form_key=new_form_key(),
        done=DONE.get(request.query_params.get("done", "")),
    )


@router.get("", include_in_schema=False)
async def show_webhooks(request: Request, state: StateDep, signed: SignedIn) -> Response:
    return await _list_page(request, state, signed)


@router.post("", include_in_schema=False)
async def add_webhook(request: Request, state: StateDep, signed: CsrfChecked) -> Response:
    form = await request.form()
    values, chosen = _typed(form)
    kept = FormState(values=values)
    kept.values["event_types"] = ",".join(chosen)
    status_code = status.HTTP_400_BAD_REQUEST
    try:
        body = create_body(values, chosen)
        async with state.transactions.begin() as session:
            created = await service.create_webhook(
                session,
                state.webhooks,
                account_id=signed.account_id,
                data=body,
                form_key=posted_form_key(form.get("form_key")),
            )
            await console.allow_reveal(session, signed=signed, webhook_id=created.id)
    except ValidationError as exc:
        kept.errors = validation_errors(exc)
    except AppError as exc:
        kept.errors = refusal_errors(exc)
        status_code = exc.status
    if kept.failed:
        return await _list_page(request, state, signed, add=kept, status_code=status_code)
    # POST-redirect-GET: reloading the answer reloads the GET, never adds a second subscription. The
    # secret does not travel in the URL: the session may show it once (console.take_reveal).
    return redirect(f"{PREFIX}/webhooks/{created.id}/added")


@router.get("/{raw_id}/added", include_in_schema=False)
async def show_added(raw_id: str, request: Request, state: StateDep, signed: SignedIn) -> Response:
    """The answer to adding: the secret the first time, never again (a reload says so)."""
    webhook = await _one(state, signed.account_id, raw_id)
    if webhook is None:
        return not_found(request, signed, what="webhook subscription")
    async with state.transactions.begin() as session:
        secret = None
        if await console.take_reveal(session, signed=signed, webhook_id=webhook.id):
            secret = await service.reveal_secret(
                session, state.webhooks, account_id=signed.account_id, webhook_id=webhook.id
            )
    # Never logged; every console page is sent with Cache-Control: no-store.
    return page(
        request, "webhook_created.html", signed=signed, title="Webhook added", webhook=webhook, secret=secret
    )


async def _one(state: AppState, account_id: int, raw_id: str) -> WebhookRead | None:
    async def load(session: AsyncSession, webhook_id: int) -> WebhookRead:
        return service.to_read(
            await service.get_webhook(session, account_id=account_id, webhook_id=webhook_id)
        )

    return await find(state.sessions, raw_id, load)


@router.get("/{raw_id}", include_in_schema=False)
async def show_webhook(raw_id: str, request: Request, state: StateDep, signed: SignedIn) -> Response:
    webhook = await _one(state, signed.account_id, raw_id)
    if webhook is None:
        return not_found(request, signed, what="webhook subscription")
    return await _webhook_page(request, state, signed, webhook)


async def _webhook_page(
    request: Request,
    state: AppState,
    signed: Signed,
    webhook: WebhookRead,
    *,
    edit: FormState | None = None,
    status_code: int | None = None,
) -> Response:
    raw_page = request.query_params.get("page", "1")
    valid = raw_page.isascii() and raw_page.isdigit() and 1 <= int(raw_page) <= _MAX_PAGE
    number = int(raw_page) if valid else 1
    async with state.sessions() as session:
        log = await service.deliveries(
            session, account_id=signed.account_id, webhook_id=webhook.id, page=number - 1
        )
    queued = request.query_params.get("queued", "")
    return page(
        request,
        "webhook.html",
        signed=signed,
        status_code=status_code or (200 if valid else status.HTTP_400_BAD_REQUEST),
        title=f"Webhook {webhook.url}",
        webhook=webhook,
        log=log,
        page_error=None if valid else f"A page is a number from 1 to {_MAX_PAGE}: the first page is shown.",
        queued=queued if queued.isascii() and queued.isdigit() else None,
        edit=edit or _edit_state(webhook),
        event_types=EVENT_TYPES,
        done=DONE.get(request.query_params.get("done", "")),
    )


def _edit_state(webhook: WebhookRead) -> FormState:
    """The edit form filled in with the subscription as it is."""
    return FormState(
        values={
            "url": webhook.url,
            "description": webhook.description or "",
            "event_types": ",".join(webhook.event_types or []),
        }
    )


@router.get("/{raw_id}/delete", include_in_schema=False)
async def confirm_delete(raw_id: str, request: Request, state: StateDep, signed: SignedIn) -> Response:
    webhook = await _one(state, signed.account_id, raw_id)
    if webhook is None:
        return not_found(request, signed, what="webhook subscription")
    return page(request, "webhook_delete.html", signed=signed, title="Delete a webhook", webhook=webhook)


@router.post("/{raw_id}/{action}", include_in_schema=False)
async def change_webhook(
    raw_id: str, action: str, request: Request, state: StateDep, signed: CsrfChecked
) -> Response:
    webhook = await _one(state, signed.account_id, raw_id)
    if webhook is None or action not in ("enable", "disable", "delete", "test", "edit"):
        return not_found(request, signed, what="webhook subscription")
    if action == "edit":
        return await _edit(request, state, signed, webhook)
    try:
        async with state.transactions.begin() as session:
            if action == "delete":
                await service.delete_webhook(session, account_id=signed.account_id, webhook_id=webhook.id)
            elif action == "test":
                event_id = await service.send_test(
                    session, state.webhooks, account_id=signed.account_id, webhook_id=webhook.id
                )
            else:
                await service.update_webhook(
                    session,
                    state.webhooks,
                    account_id=signed.account_id,
                    webhook_id=webhook.id,
                    data=WebhookUpdate(enabled=action == "enable"),
                )
    except NotFound:  # deleted meanwhile
        return not_found(request, signed, what="webhook subscription")
    if action == "delete":
        return redirect(f"{PREFIX}/webhooks", done="deleted")
    if action == "test":
        return redirect(f"{PREFIX}/webhooks/{webhook.id}", queued=str(event_id))
    return redirect(f"{PREFIX}/webhooks", done=f"{action}d")


async def _edit(request: Request, state: AppState, signed: Signed, webhook: WebhookRead) -> Response:
    """The edit form through update_webhook, as the API's PATCH; a refusal is shown next to its field."""
    values, chosen = _typed(await request.form())
    kept = FormState(values={**values, "event_types": ",".join(chosen)})
    status_code = status.HTTP_400_BAD_REQUEST
    try:
        body = update_body(values, chosen)
        async with state.transactions.begin() as session:
            await service.update_webhook(
                session, state.webhooks, account_id=signed.account_id, webhook_id=webhook.id, data=body
            )
    except ValidationError as exc:
        kept.errors = validation_errors(exc)
    except NotFound:  # deleted meanwhile
        return not_found(request, signed, what="webhook subscription")
    except AppError as exc:
        kept.errors = refusal_errors(exc)
        status_code = exc.status
    if kept.failed:
        return await _webhook_page(request, state, signed, webhook, edit=kept, status_code=status_code)
    return redirect(f"{PREFIX}/webhooks/{webhook.id}", done="edited")
