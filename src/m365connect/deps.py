"""Annotated dependency aliases that make endpoint signatures read like prose."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader
from sqlalchemy.ext.asyncio import AsyncSession

from m365connect.accounts.service import authenticate
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


SessionDep = Annotated[AsyncSession, Depends(_session)]


async def _current_account(
    session: SessionDep, api_key: Annotated[str | None, Depends(api_key_header)]
) -> int:
    account_id = await authenticate(session, presented=api_key)
    if account_id is None:
        raise Unauthorized()
    await session.commit()  # end the auth transaction: a long request must not hold the key row
    return account_id


CurrentAccount = Annotated[int, Depends(_current_account)]
