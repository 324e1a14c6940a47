"""API key authentication at the ASGI edge, before the app reads a byte of the request body.

FastAPI resolves dependencies only after it has read and parsed the body, so when the key was checked in
a dependency a bogus key with a 2 MiB body cost a full read and parse (about 170 ms) before its 401, and
four such senders slowed every other client (issue 9). Here the key is checked from the headers alone,
and the per-key rate limit is applied at the same place; the route gets the account id through the
request scope (`api.deps.CurrentAccount`).

The gate is given the routes of the API routers (create_app): every one needs the key; probes, metrics
and the OpenAPI pages do not. A route that asks for `CurrentAccount` but was not given to the gate is
refused with 401 every time (the dependency finds no account in the scope): a forgotten route fails
closed. A path that matches no route (404) or not with this method (405) is left to the router, which
answers without reading the body either. A refused request is answered with `Connection: close`:
its body was never read, and on a kept-alive connection uvicorn would otherwise read and discard the
whole body to reach the next request. Each client address has a budget of failed authentications
(state.failures: in Redis when M365CONNECT_REDIS_URL is set, one budget for every replica; else per
process); past it, the address is answered 429 without looking at the key at all.
"""

from __future__ import annotations

from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Receive, Scope, Send

from m365connect.accounts.authenticator import KeyAuthenticator
from m365connect.api.edge import RATE_LIMIT_HEADERS
from m365connect.api.error_handlers import DATABASE_UNREACHABLE, database_unavailable, render
from m365connect.errors import AppError, TooManyRequests, Unauthorized
from m365connect.state import AppState

ACCOUNT_ID = "account_id"  # request-scope state key: the authenticated account (also in the request log)
_API_KEY_HEADER = b"x-api-key"


class ApiKeyGate:
    """Admits a request to one of `routes` only with a valid API key that is within its rate limit."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        routes: tuple[BaseRoute, ...],
        authenticator: KeyAuthenticator,
    ) -> None:
        self.app = app
        self.routes = routes
        self.authenticator = authenticator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Authenticate, then hand the request on; or refuse it without reading its body."""
        route = self._matched_route(scope) if scope["type"] == "http" else None
        if route is None:
            await self.app(scope, receive, send)  # the router answers 404/405 without reading the body
            return
        try:
            refusal = await self._admit(scope)
        except DATABASE_UNREACHABLE as exc:
            refusal = database_unavailable(exc)
            if refusal is None:
                raise
        if refusal is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = route  # names the route in the request log and metrics, as the router would
        response = render(refusal)
        response.headers["connection"] = "close"  # the unread body is not worth reading
        await response(scope, receive, send)

    def _matched_route(self, scope: Scope) -> BaseRoute | None:
        """The route of ours that takes this path and method, if any."""
        for route in self.routes:
            match, _ = route.matches(scope)
            if match is Match.FULL:
                return route
        return None

    async def _admit(self, scope: Scope) -> AppError | None:
        """None when the request may go on (its account id and rate-limit headers are in the scope)."""
        address = _client_address(scope)
        state = _app_state(scope)
        spent = await state.failures.check(address)
        if spent is not None and not spent.allowed:
            return TooManyRequests(retry_after=spent.retry_after)
        key = await self.authenticator.authenticate(state.sessions, _presented_key(scope))
        if key is None:
            await state.failures.take(address)
            return Unauthorized()
        request_state = scope.setdefault("state", {})
        request_state[ACCOUNT_ID] = key.account_id
        decision = await state.limiter.take(key.bucket)
        if decision is None:  # the shared limiter is unreachable: served unlimited (ratelimit.py)
            return None
        request_state[RATE_LIMIT_HEADERS] = decision.headers()
        if not decision.allowed:
            return TooManyRequests(retry_after=decision.retry_after)
        return None


def _app_state(scope: Scope) -> AppState:
    state = scope["app"].state.m365connect
    assert isinstance(state, AppState)
    return state


def _client_address(scope: Scope) -> str:
    # uvicorn puts the proxy's client here when --proxy-headers trusts it.
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def _presented_key(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == _API_KEY_HEADER:
            text: str = value.decode("latin-1")
            return text
    return None
