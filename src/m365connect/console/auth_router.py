"""Sign-in and sign-out. The API key is read from a POSTed form only: it never appears in a URL, a page
(the field is never filled in again) or a log (the request log names the route, never the body)."""

from __future__ import annotations

from fastapi import APIRouter, Request, status
from fastapi.responses import Response

from m365connect.accounts.authenticator import KeyAuthenticator
from m365connect.api.deps import StateDep
from m365connect.console import service
from m365connect.console.web import (
    PREFIX,
    SESSION_COOKIE,
    SIGN_IN_COOKIE,
    CsrfRefused,
    clear_cookie,
    page,
    policy_of,
    redirect,
    set_cookie,
)

_SIGN_IN_FORM_SECONDS = 3600
REFUSED = "That API key was not accepted: it is unknown, mistyped or revoked."


def client_address(request: Request) -> str:
    """The client's address (with --proxy-headers, the one the trusted proxy names), as the API's gate."""
    return request.client.host if request.client else "unknown"


def auth_router(*, authenticator: KeyAuthenticator) -> APIRouter:
    """The sign-in routes; failed sign-ins spend the same per-address budget as refused API keys
    (state.failures: in Redis when M365CONNECT_REDIS_URL is set, so one budget for every replica)."""
    router = APIRouter(prefix=PREFIX)

    @router.get("/sign-in", include_in_schema=False)
    async def show_sign_in(request: Request, state: StateDep) -> Response:
        async with state.sessions() as session:
            signed = await service.resume(
                session, token=request.cookies.get(SESSION_COOKIE), policy=policy_of(state.settings)
            )
            await session.commit()
        if signed is not None:
            return redirect(f"{PREFIX}/credentials")
        return _sign_in_page(request)

    @router.post("/sign-in", include_in_schema=False)
    async def sign_in(request: Request, state: StateDep) -> Response:
        form = await request.form()
        presented = form.get("csrf_token")
        if not service.csrf_matches(
            request.cookies.get(SIGN_IN_COOKIE), presented if isinstance(presented, str) else None
        ):
            raise CsrfRefused()
        address = client_address(request)
        spent = await state.failures.check(address)
        if spent is not None and not spent.allowed:
            message = f"Too many failed sign-ins from your address: try again in {spent.retry_after} seconds."
            response = _sign_in_page(request, error=message, status_code=status.HTTP_429_TOO_MANY_REQUESTS)
            response.headers["Retry-After"] = str(spent.retry_after)
            return response
        api_key = form.get("api_key")
        key = await authenticator.authenticate(
            state.sessions, api_key.strip() if isinstance(api_key, str) else None
        )
        if key is None:
            await state.failures.take(address)
            return _sign_in_page(request, error=REFUSED, status_code=status.HTTP_401_UNAUTHORIZED)
        policy = policy_of(state.settings)
        async with state.sessions() as session:
            token = await service.open_session(session, key=key, policy=policy)
            await session.commit()
        response = redirect(f"{PREFIX}/credentials")
        set_cookie(
            response, request, name=SESSION_COOKIE, value=token, max_age=int(policy.absolute.total_seconds())
        )
        clear_cookie(response, request, name=SIGN_IN_COOKIE)
        return response

    @router.post("/sign-out", include_in_schema=False)
    async def sign_out(request: Request, state: StateDep) -> Response:
        form = await request.form()
        token = request.cookies.get(SESSION_COOKIE)
        presented = form.get("csrf_token")
        if not service.csrf_matches(token, presented if isinstance(presented, str) else None):
            raise CsrfRefused()
        async with state.sessions() as session:
            await service.close(session, token=token)
            await session.commit()
        response = redirect(f"{PREFIX}/sign-in", done="signed-out")
        clear_cookie(response, request, name=SESSION_COOKIE)
        return response

    @router.get("", include_in_schema=False)
    @router.get("/", include_in_schema=False)
    async def console_home() -> Response:
        return redirect(f"{PREFIX}/credentials")

    return router


def _sign_in_page(request: Request, *, error: str | None = None, status_code: int = 200) -> Response:
    """The form with a fresh CSRF secret in a cookie of its own (there is no session yet)."""
    secret = service.new_random_token()
    signed_out = request.query_params.get("done") == "signed-out"
    response = page(
        request,
        "sign_in.html",
        signed=None,
        status_code=status_code,
        csrf_token=service.csrf_token_of(secret),
        error=error,
        signed_out=signed_out,
        title="Sign in",
    )
    set_cookie(response, request, name=SIGN_IN_COOKIE, value=secret, max_age=_SIGN_IN_FORM_SECONDS)
    return response
