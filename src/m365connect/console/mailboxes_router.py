"""The mailboxes page: paged, searchable, filterable, each failing mailbox explained; verify now, and
disconnect after a confirmation. Everything goes through mailboxes.service and health.service, as the
API's routes do."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import APIRouter, Request, status
from fastapi.responses import Response
from sqlalchemy.ext.asyncio import AsyncSession

from m365connect.api.deps import StateDep
from m365connect.console.forms import explained
from m365connect.console.web import PREFIX, CsrfChecked, SignedIn, find, not_found, page, parse_id, redirect
from m365connect.credentials import service as credentials
from m365connect.credentials.schemas import CredentialRead
from m365connect.errors import AppError
from m365connect.explanations import Context
from m365connect.health import service as health
from m365connect.mailboxes import service
from m365connect.mailboxes.models import ACTIVE, DISCONNECTED
from m365connect.mailboxes.schemas import MailboxRead
from m365connect.mailboxes.service import MailboxFilter
from m365connect.state import AppState

router = APIRouter(prefix=f"{PREFIX}/mailboxes")
DONE = {
    "disconnected": "The mailbox was disconnected.",
    "verified-ok": "The mailbox was verified with Microsoft just now: it works.",
    "verified-failing": "The mailbox was verified with Microsoft just now: it is failing (see below).",
}
STATUSES = (ACTIVE, DISCONNECTED)
TYPES = ("user", "shared", "unknown")
HEALTHS = ("OK", "FAILING")
_MAX_TEXT = 320
_MAX_PAGE = 10_000_000


@dataclass(frozen=True)
class Query:
    """The page's filters as typed, and what was wrong with them."""

    values: dict[str, str]
    filters: MailboxFilter
    page: int
    errors: dict[str, str]


def parse_query(params: dict[str, str]) -> Query:
    """The filters from the query string; a value out of its choices is reported, never a 500."""
    values = {
        name: params.get(name, "").strip()[:_MAX_TEXT]
        for name in ("address", "status", "type", "credential", "domain", "health", "page")
    }
    errors: dict[str, str] = {}
    if values["status"] and values["status"] not in STATUSES:
        errors["status"] = "Choose ACTIVE or DISCONNECTED."
    if values["health"] and values["health"] not in HEALTHS:
        errors["health"] = "Choose OK or FAILING."
    if values["type"] and values["type"] not in TYPES:
        errors["type"] = "Choose user, shared or unknown."
    credential_id = parse_id(values["credential"]) if values["credential"] else None
    if values["credential"] and credential_id is None:
        errors["credential"] = "Choose one of your credentials."
    page_number = 1
    if values["page"]:
        if values["page"].isascii() and values["page"].isdigit() and 1 <= int(values["page"]) <= _MAX_PAGE:
            page_number = int(values["page"])
        else:
            errors["page"] = f"A page is a number from 1 to {_MAX_PAGE}."
    filters = MailboxFilter(
        status=values["status"] if "status" not in errors and values["status"] else None,
        address=values["address"] or None,
        mailbox_type=values["type"] if "type" not in errors and values["type"] else None,
        credential_id=credential_id,
        domain=values["domain"].lstrip("@") or None,
        health=values["health"] if "health" not in errors and values["health"] else None,
    )
    return Query(values=values, filters=filters, page=page_number, errors=errors)


async def _credentials(state: AppState, account_id: int) -> dict[int, CredentialRead]:
    async with state.sessions() as session:
        rows = await credentials.list_credentials(session, account_id=account_id)
        return {row.id: credentials.to_read(row) for row in rows}


def explain_failure(mailbox: MailboxRead, credential: CredentialRead | None, *, login_url: str) -> str:
    """A FAILING mailbox's error with its meaning and fix (docs/errors.md), its values filled in."""
    code = mailbox.health.error or ""
    context = Context(
        mailbox_email=mailbox.email,
        tenant_id=credential.tenant_id if credential else None,
        client_id=credential.client_id if credential else None,
        credential_id=mailbox.credential_id,
        login_url=login_url,
        cloud=credential.cloud if credential else "global",
    )
    return explained(code, context)


@router.get("", include_in_schema=False)
async def show_mailboxes(request: Request, state: StateDep, signed: SignedIn) -> Response:
    query = parse_query(dict(request.query_params))
    async with state.sessions() as session:
        found = await service.search_page(
            session, account_id=signed.account_id, page=query.page - 1, filters=query.filters
        )
    known = await _credentials(state, signed.account_id)
    login_url = state.settings.login_url
    failures = {
        m.id: explain_failure(m, known.get(m.credential_id or 0), login_url=login_url)
        for m in found.content
        if m.health.state == "FAILING"
    }
    done = DONE.get(request.query_params.get("done", ""))
    return page(
        request,
        "mailboxes.html",
        signed=signed,
        status_code=status.HTTP_400_BAD_REQUEST if query.errors else 200,
        title="Mailboxes",
        query=query,
        result=found,
        credentials={cid: item.name for cid, item in known.items()},
        failures=failures,
        healths=HEALTHS,
        statuses=STATUSES,
        types=TYPES,
        done=done,
    )


async def _mailbox_or_none(state: AppState, account_id: int, raw_id: str) -> MailboxRead | None:
    async def load(session: AsyncSession, mailbox_id: int) -> MailboxRead:
        return service.to_read(
            await service.get_mailbox(session, account_id=account_id, mailbox_id=mailbox_id)
        )

    return await find(state.sessions, raw_id, load)


@router.get("/{raw_id}/disconnect", include_in_schema=False)
async def confirm_disconnect(raw_id: str, request: Request, state: StateDep, signed: SignedIn) -> Response:
    mailbox = await _mailbox_or_none(state, signed.account_id, raw_id)
    if mailbox is None:
        return not_found(request, signed, what="mailbox")
    return page(request, "disconnect.html", signed=signed, title="Disconnect a mailbox", mailbox=mailbox)


@router.post("/{raw_id}/disconnect", include_in_schema=False)
async def disconnect_mailbox(raw_id: str, request: Request, state: StateDep, signed: CsrfChecked) -> Response:
    mailbox = await _mailbox_or_none(state, signed.account_id, raw_id)
    if mailbox is None:
        return not_found(request, signed, what="mailbox")
    async with state.transactions.begin() as session:
        await service.disconnect(session, account_id=signed.account_id, mailbox_id=mailbox.id)
    return redirect(f"{PREFIX}/mailboxes", done="disconnected")


@router.post("/{raw_id}/verify", include_in_schema=False)
async def verify_mailbox(raw_id: str, request: Request, state: StateDep, signed: CsrfChecked) -> Response:
    mailbox = await _mailbox_or_none(state, signed.account_id, raw_id)
    if mailbox is None:
        return not_found(request, signed, what="mailbox")
    try:
        checked = service.to_read(
            await health.verify_mailbox(state, account_id=signed.account_id, mailbox_id=mailbox.id)
        )
    except AppError as exc:
        return page(
            request,
            "message.html",
            signed=signed,
            status_code=exc.status if exc.status in (404, 503) else 422,
            title="Not verified",
            message=f"{mailbox.email} could not be verified now: {_reason(exc)}",
        )
    outcome = "verified-failing" if checked.health.state == "FAILING" else "verified-ok"
    return redirect(f"{PREFIX}/mailboxes", address=checked.email, done=outcome)


def _reason(exc: AppError) -> str:
    code = getattr(exc, "code", None)
    if code is not None:
        return f"{code}: {explained(str(code))}"
    return str(getattr(exc, "detail", "")) or explained(str(exc.status))
