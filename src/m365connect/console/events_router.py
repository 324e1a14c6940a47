"""The events page: the account's event stream, newest first, paged with a cursor ("older" / "newer"),
filtered by type, each event linked to the credential or mailbox it concerns. Read-only; everything goes
through events.service, as the API's route does (the hidden types stay its rule)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from fastapi import APIRouter, Request, status
from fastapi.responses import Response

from m365connect.api.deps import StateDep
from m365connect.console.web import PREFIX, SignedIn, page, parse_id
from m365connect.credentials import service as credentials
from m365connect.events import service
from m365connect.events.schemas import EventRead
from m365connect.events.types import SUBSCRIBABLE
from m365connect.state import AppState
from m365connect.wire import MAX_ID

router = APIRouter(prefix=f"{PREFIX}/events")
PAGE_SIZE = 50
TYPES = tuple(sorted(SUBSCRIBABLE))  # the types an account's stream holds (webhook.test never does)
_MAX_TEXT = 64


@dataclass(frozen=True)
class Query:
    """The page's type filter and cursor as typed, and what was wrong with them."""

    values: dict[str, str]
    types: list[str] | None
    before: int | None
    after: int | None
    errors: dict[str, str]


def parse_query(params: dict[str, str]) -> Query:
    """The filter and cursor from the query string; a bad value is reported (400), never a 500."""
    values = {name: params.get(name, "").strip()[:_MAX_TEXT] for name in ("type", "before", "after")}
    errors: dict[str, str] = {}
    if values["type"] and values["type"] not in TYPES:
        errors["type"] = "Choose one of the event types of the list."
    before = parse_id(values["before"]) if values["before"] else None
    after = parse_id(values["after"]) if values["after"] else None
    if (values["before"] and before is None) or (values["after"] and after is None):
        errors["cursor"] = f"A cursor is an event id from 1 to {MAX_ID}: the first page is shown."
        before = after = None
    if before is not None and after is not None:
        errors["cursor"] = "Use either 'older' or 'newer', not both: the first page is shown."
        before = after = None
    types = [values["type"]] if values["type"] and "type" not in errors else None
    return Query(values=values, types=types, before=before, after=after, errors=errors)


@dataclass(frozen=True)
class Window:
    """One page of events, newest first, and whether older and newer events exist beyond it."""

    events: list[EventRead]
    older: int | None  # the `before` of the older page
    newer: int | None  # the `after` of the newer page


async def _window(state: AppState, account_id: int, query: Query) -> Window:
    async with state.sessions() as session:
        if query.after is not None:
            found = await service.page_after(
                session, account_id=account_id, after=query.after, limit=PAGE_SIZE + 1, types=query.types
            )
            more_newer = len(found.events) > PAGE_SIZE
            events = list(reversed(found.events[:PAGE_SIZE]))
            # Came from an "newer" link: there were older ones (at or below the cursor).
            return Window(
                events=events,
                older=events[-1].id if events else query.after + 1,
                newer=events[0].id if more_newer and events else None,
            )
        listed = await service.page_before(
            session, account_id=account_id, before=query.before, limit=PAGE_SIZE + 1, types=query.types
        )
    events = listed[:PAGE_SIZE]
    return Window(
        events=events,
        older=events[-1].id if len(listed) > PAGE_SIZE else None,
        newer=(events[0].id if events else query.before - 1) if query.before is not None else None,
    )


def subject(event: EventRead, known_credentials: set[int]) -> dict[str, str | None]:
    """What the event is about, as a label and a link to its page where that page exists."""
    data = event.data
    if event.type.startswith("credential."):
        cid = data.get("credential_id")
        label = f"Credential {data.get('name') or cid}"
        link = f"{PREFIX}/credentials/{cid}" if isinstance(cid, int) and cid in known_credentials else None
        return {"label": label, "link": link}
    if event.type.startswith("mailbox.") and isinstance(data.get("email"), str):
        email = data["email"]
        return {"label": f"Mailbox {email}", "link": f"{PREFIX}/mailboxes?address={quote(email)}"}
    if event.type.startswith("bulk_job."):
        return {"label": f"Bulk job {data.get('job_id', '')}".strip(), "link": None}
    return {"label": "—", "link": None}


@router.get("", include_in_schema=False)
async def show_events(request: Request, state: StateDep, signed: SignedIn) -> Response:
    query = parse_query(dict(request.query_params))
    window = await _window(state, signed.account_id, query)
    async with state.sessions() as session:
        known = {row.id for row in await credentials.list_credentials(session, account_id=signed.account_id)}
    return page(
        request,
        "events.html",
        signed=signed,
        status_code=status.HTTP_400_BAD_REQUEST if query.errors else 200,
        title="Events",
        query=query,
        window=window,
        subjects={event.id: subject(event, known) for event in window.events},
        types=TYPES,
    )
