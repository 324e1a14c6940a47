"""Annotated dependency aliases that make endpoint signatures read like prose."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader
from sqlalchemy.ext.asyncio import AsyncSession

from m365connect.api.auth_edge import ACCOUNT_ID
from m365connect.db.transactions import Transactions
from m365connect.errors import Unauthorized
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
    request: Request, _presented: Annotated[str | None, Depends(api_key_header)]
) -> int:
    """The account that the edge authenticated (api.auth_edge.ApiKeyGate) before the body was read; the
    header dependency only documents the key in OpenAPI."""
    account_id = getattr(request.state, ACCOUNT_ID, None)
    if not isinstance(account_id, int):  # an app built without the gate: refuse rather than guess
        raise Unauthorized()
    return account_id


CurrentAccount = Annotated[int, Depends(_current_account)]
