"""Annotated dependency aliases that make endpoint signatures read like prose."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader
from sqlalchemy.ext.asyncio import AsyncSession

from m365connect.accounts.service import authenticate_key
from m365connect.api.edge import RATE_LIMIT_HEADERS
from m365connect.db.transactions import Transactions
from m365connect.errors import TooManyRequests, Unauthorized
from m365connect.state import AppState

api_key_header = APIKeyHeader(name="x-api-key", auto_error=False, description="Your m365connect API key")


def _state(request: Request) -> AppState:
    state = request.app.state.m365connect
    assert isinstance(state, AppState)
    return state


StateDep = Annotated[AppState, Depends(_state)]


async def _session(state: StateDep) -> AsyncIterator[AsyncSession]:
    """One session per request; the request boundary commits (or rolls back on error)."""
    async with state.sessions() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise


# scope="function": the commit happens before the response is sent, so a 2xx means "saved" and the
# client's next request sees it (FastAPI's default would commit after the response).
SessionDep = Annotated[AsyncSession, Depends(_session, scope="function")]


def _transactions(state: StateDep) -> Transactions:
    return state.transactions


# For the requests that need more than one transaction (m365connect.db.transactions says which and why).
TransactionsDep = Annotated[Transactions, Depends(_transactions)]


async def _current_account(
    request: Request,
    session: SessionDep,
    state: StateDep,
    api_key: Annotated[str | None, Depends(api_key_header)],
) -> int:
    key = await authenticate_key(session, presented=api_key)
    if key is None:
        raise Unauthorized()
    await session.commit()  # end the auth transaction: a long request must not hold the key row
    request.state.account_id = key.account_id  # for the request log line
    decision = await state.limiter.take(key.bucket)
    if decision is None:  # the shared limiter is unreachable: served unlimited (ratelimit.py)
        return key.account_id
    setattr(request.state, RATE_LIMIT_HEADERS, decision.headers())
    if not decision.allowed:
        raise TooManyRequests(retry_after=decision.retry_after)
    return key.account_id


CurrentAccount = Annotated[int, Depends(_current_account)]
