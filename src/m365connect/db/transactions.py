"""Units of work: how a request's changes reach the database.

The rule: a request's session (`SessionDep`) is one transaction, committed by the request boundary before
the answer is sent (rolled back on error). A request that needs more than one transaction says so: its
service takes `Transactions` instead of a session and runs each step in `async with transactions.begin()`,
which commits when the block ends. Three requests need it, each for a reason:
- bulk connection: no transaction stays open while Microsoft and DNS answer (seconds to minutes), so
  reading and writing are two transactions with the verification between them;
- creating and rotating a credential: the same, around the token request that proves the secret;
- a credential that Microsoft refuses during a bulk request is marked INVALID in a transaction of its own,
  so the verdict outlives the request's 422.

A change's event (events.service.record_event) is written in the change's transaction, as its last
statement: recording locks the account until the commit, which keeps the account's events in id order.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker


class Transactions:
    """Opens one transaction per step of a unit of work; loaded objects stay usable after each commit."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncSession]:
        """A session in a transaction that commits when the block ends and rolls back if it raises."""
        async with self._sessions() as session, session.begin():
            yield session
