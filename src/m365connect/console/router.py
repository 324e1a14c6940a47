"""The console's routes, mounted at /console by create_app: sign-in, credentials, mailboxes, static files."""

from __future__ import annotations

from fastapi import FastAPI, Request, status
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles

from m365connect.accounts.authenticator import KeyAuthenticator
from m365connect.api.error_handlers import DATABASE_UNREACHABLE, database_unavailable, render
from m365connect.console import (
    credentials_router,
    events_router,
    imports_router,
    mailboxes_router,
    webhooks_router,
)
from m365connect.console.auth_router import auth_router
from m365connect.console.web import PACKAGE_DIR, PREFIX, CsrfRefused, SignInRequired, page, redirect


async def _on_sign_in_required(_request: Request, _exc: Exception) -> Response:
    return redirect(f"{PREFIX}/sign-in")


async def _on_csrf_refused(request: Request, _exc: Exception) -> Response:
    return page(
        request,
        "message.html",
        signed=None,
        status_code=status.HTTP_403_FORBIDDEN,
        title="Form refused",
        message="This form was not sent from a page of this console (its security token is missing or "
        "out of date). Nothing was changed. Go back, reload the page and try again.",
    )


async def _on_database_unavailable(request: Request, exc: Exception) -> Response:
    """A console page while the database is unreachable: an HTML 503 page (the API keeps its JSON 503).
    Which failures are an outage stays the API's rule (`database_unavailable`)."""
    error = database_unavailable(exc)
    if error is None:
        raise exc
    if not _is_console(request.url.path):
        return render(error)
    response = page(
        request,
        "message.html",
        signed=None,
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        title="Database unavailable",
        message="The service cannot reach its database right now, so this page cannot be shown and nothing "
        "was changed. Try again in a few seconds; if it lasts, tell whoever runs the service.",
    )
    response.headers["Retry-After"] = str(error.retry_after)
    return response


def _is_console(path: str) -> bool:
    return path == PREFIX or path.startswith(f"{PREFIX}/")


def install_console(app: FastAPI, *, authenticator: KeyAuthenticator) -> None:
    """Add the console's pages, its static files, its two refusals (sign in first; a form refused) and
    its page for a database outage."""
    app.include_router(auth_router(authenticator=authenticator))
    app.include_router(credentials_router.router)
    app.include_router(mailboxes_router.router)
    app.include_router(imports_router.router)
    app.include_router(events_router.router)
    app.include_router(webhooks_router.router)
    app.mount(f"{PREFIX}/static", StaticFiles(directory=PACKAGE_DIR / "static"), name="console-static")
    app.add_exception_handler(SignInRequired, _on_sign_in_required)
    app.add_exception_handler(CsrfRefused, _on_csrf_refused)
    for unreachable in DATABASE_UNREACHABLE:  # replaces the API's handler, which it calls for API paths
        app.add_exception_handler(unreachable, _on_database_unavailable)
