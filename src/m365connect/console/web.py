"""The console's HTTP plumbing: templates, the session cookie, the signed-in dependency and CSRF.

A page that needs a session depends on `SignedIn`: without a live session the browser is sent to the
sign-in page. Every form posts a `csrf_token`; `CsrfChecked` compares it in constant time with the
session's and refuses a missing or wrong one with the 403 page (docs/console.md).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Any, TypeVar
from urllib.parse import quote

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from m365connect.api.deps import StateDep
from m365connect.console import service
from m365connect.console.service import SessionPolicy, Signed
from m365connect.errors import NotFound
from m365connect.settings import Settings
from m365connect.wire import MAX_ID

SESSION_COOKIE = "m365connect_console"
SIGN_IN_COOKIE = "m365connect_console_sign_in"  # the sign-in form's CSRF secret (no session yet)
PREFIX = "/console"
PACKAGE_DIR = Path(str(files("m365connect.console")))
templates = Jinja2Templates(directory=PACKAGE_DIR / "templates")  # autoescapes .html


class SignInRequired(Exception):
    """No live session: the browser goes to the sign-in page."""


class CsrfRefused(Exception):
    """A form without the session's CSRF token."""


def policy_of(settings: Settings) -> SessionPolicy:
    """The session lifetimes from the settings."""
    return SessionPolicy(
        idle=timedelta(minutes=settings.console_session_idle_minutes),
        absolute=timedelta(hours=settings.console_session_max_hours),
    )


def is_https(request: Request) -> bool:
    """Whether the browser reached us over TLS (with --proxy-headers, as the trusted proxy says)."""
    return request.url.scheme == "https"


def set_cookie(response: Response, request: Request, *, name: str, value: str, max_age: int) -> None:
    """A cookie the page's scripts cannot read, never sent by another site, Secure over https."""
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=PREFIX,
        httponly=True,
        samesite="strict",
        secure=is_https(request),
    )


def clear_cookie(response: Response, request: Request, *, name: str) -> None:
    """Remove a console cookie."""
    response.delete_cookie(name, path=PREFIX, httponly=True, samesite="strict", secure=is_https(request))


async def _signed_in(request: Request, state: StateDep) -> Signed:
    async with state.sessions() as session:
        signed = await service.resume(
            session, token=request.cookies.get(SESSION_COOKIE), policy=policy_of(state.settings)
        )
        await session.commit()
    if signed is None:
        raise SignInRequired()
    return signed


SignedIn = Annotated[Signed, Depends(_signed_in)]


async def _csrf_checked(request: Request, signed: SignedIn) -> Signed:
    await check_csrf(request)
    return signed


async def check_csrf(request: Request) -> None:
    """Refuse (CsrfRefused) a form without the session's CSRF token; for a route that must look at the
    request before its body is read (the import page bounds the upload first), else use CsrfChecked."""
    form = await request.form()
    presented = form.get("csrf_token")
    token = request.cookies.get(SESSION_COOKIE)
    if not isinstance(presented, str) or not service.csrf_matches(token, presented):
        await form.close()  # uploaded files are spooled to temporary files: release them now
        raise CsrfRefused()


CsrfChecked = Annotated[Signed, Depends(_csrf_checked)]


def page(
    request: Request, name: str, *, signed: Signed | None, status_code: int = 200, **context: Any
) -> HTMLResponse:
    """Render a template with what every page needs (the CSRF token, the current path)."""
    values = {
        "csrf_token": signed.csrf_token if signed is not None else context.pop("csrf_token", ""),
        "signed_in": signed is not None,
        "path": request.url.path,
        **context,
    }
    return templates.TemplateResponse(request, name, values, status_code=status_code)


def not_found(request: Request, signed: Signed, *, what: str) -> HTMLResponse:
    """The 404 page of an id that is not in the signed-in account (or no id at all): "no such <what>"."""
    return page(
        request,
        "message.html",
        signed=signed,
        status_code=404,
        title="Not found",
        message=f"There is no such {what} in your account.",
    )


def redirect(path: str, **query: str) -> RedirectResponse:
    """303 See Other to a console page (after a form: the browser then GETs it)."""
    if query:
        path += "?" + "&".join(f"{key}={quote(value)}" for key, value in query.items())
    return RedirectResponse(path, status_code=303)


def parse_id(raw: str) -> int | None:
    """An id from a path: ASCII digits within 1 to 2^63 - 1, else None (the page answers 404)."""
    return int(raw) if raw.isascii() and raw.isdigit() and 1 <= int(raw) <= MAX_ID else None


T = TypeVar("T")


async def find(
    sessions: async_sessionmaker[AsyncSession], raw_id: str, load: Callable[[AsyncSession, int], Awaitable[T]]
) -> T | None:
    """What `load` finds for the id in a page's path, or None when the id is malformed or the account has
    no such row (the page answers 404 either way)."""
    found_id = parse_id(raw_id)
    if found_id is None:
        return None
    async with sessions() as session:
        try:
            return await load(session, found_id)
        except NotFound:
            return None
