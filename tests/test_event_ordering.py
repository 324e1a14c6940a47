"""Events commit in id order per account (events.service), so a reader following the cursor never skips
one: real overlapping transactions on PostgreSQL (SQLite has one writer at a time, so it cannot reorder).

Without the account lock, ids taken from the sequence may commit out of order: transaction A takes 50, B
takes 51 and commits first; a reader that saw 51 moves its cursor past 50 for ever.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from m365connect.accounts.models import Account
from m365connect.accounts.service import create_api_key
from m365connect.db.engine import create_engine, create_session_factory
from m365connect.events.models import Event
from m365connect.events.service import page_after, record_event
from m365connect.events.types import EventType
from tests.conftest import BACKENDS, ROOT, TABLES, truncate

pytestmark = pytest.mark.skipif("postgresql" not in BACKENDS, reason="PostgreSQL is not among the backends")

WAIT = 10.0  # seconds: a bound on polls that end as soon as their condition holds


@dataclass
class Database:
    url: str
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]

    async def account(self, name: str) -> int:
        async with self.sessions() as session, session.begin():
            account = Account(name=name)
            session.add(account)
            await session.flush()
            return account.id


@pytest.fixture
async def database(postgres_url: str) -> AsyncIterator[Database]:
    engine = create_engine(postgres_url, pool_size=10, max_overflow=10)
    try:
        yield Database(postgres_url, engine, create_session_factory(engine))
    finally:
        await engine.dispose()
        await truncate(postgres_url, (*TABLES, "events"))


async def read_after(database: Database, account_id: int, after: int, *, limit: int = 100) -> list[int]:
    async with database.sessions() as session:
        page = await page_after(session, account_id=account_id, after=after, limit=limit)
    return [event.id for event in page.events]


async def waits_on_a_lock(database: Database, pid: int) -> bool:
    async with database.sessions() as session:
        kind = await session.scalar(
            text("SELECT wait_event_type FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}
        )
    return kind == "Lock"


async def until(condition: object, *, what: str) -> None:
    """Poll an async predicate until it holds (bounded)."""
    deadline = time.monotonic() + WAIT
    while not await condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.01)


async def test_a_later_event_never_commits_before_an_earlier_one_of_its_account(database: Database) -> None:
    account_id = await database.account("ordering")
    cursor, seen = 0, []
    for round_number in range(5):
        first = database.sessions()
        second = database.sessions()
        try:
            await record_event(first, account_id=account_id, type=EventType.CREDENTIAL_UPDATED, data={"w": 1})
            pid = int(await second.scalar(text("SELECT pg_backend_pid()")) or 0)

            async def write_second(session: AsyncSession = second) -> None:
                await record_event(session, account_id=account_id, type=EventType.CREDENTIAL_UPDATED, data={})
                await session.commit()

            later = asyncio.create_task(write_second())

            async def settled(task: asyncio.Task[None] = later, backend: int = pid) -> bool:
                return task.done() or await waits_on_a_lock(database, backend)

            await until(settled, what="the second writer neither finished nor waited")
            # A reader now, while the first event is uncommitted: it must not see a later one.
            early = await read_after(database, account_id, cursor)
            seen.extend(early)
            cursor = early[-1] if early else cursor
            assert not later.done(), f"round {round_number}: the later event committed first"
            await first.commit()
            await asyncio.wait_for(later, WAIT)
        finally:
            await first.close()
            await second.close()
        late = await read_after(database, account_id, cursor)
        seen.extend(late)
        cursor = late[-1] if late else cursor
    async with database.sessions() as session:
        stored = list((await session.scalars(select(Event.id).order_by(Event.id))).all())
    assert seen == stored
    assert len(stored) == 10


async def test_other_accounts_and_foreign_keys_are_not_held_up(database: Database) -> None:
    held, other = await database.account("held"), await database.account("other")
    for _ in range(3):
        holder = database.sessions()
        try:
            await record_event(holder, account_id=held, type=EventType.CREDENTIAL_UPDATED, data={})

            async def other_account() -> None:
                async with database.sessions() as session, session.begin():
                    await record_event(session, account_id=other, type=EventType.CREDENTIAL_UPDATED, data={})

            async def same_account_key() -> None:  # an insert whose foreign key names the held account
                async with database.sessions() as session, session.begin():
                    await create_api_key(session, account_name="held")

            await asyncio.wait_for(asyncio.gather(other_account(), same_account_key()), WAIT)
            await holder.commit()
        finally:
            await holder.close()


async def test_writer_processes_and_a_cursor_reader_lose_nothing(database: Database) -> None:
    """Four writer processes, two accounts, readers following each account's cursor concurrently: each
    reader gets every event of its account exactly once, in id order."""
    accounts = [await database.account("stress-a"), await database.account("stress-b")]
    ids = ",".join(str(item) for item in accounts)
    writers = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.event_writer", database.url, ids, "60", f"w{number}", cwd=ROOT
        )
        for number in range(4)
    ]
    received: dict[int, list[int]] = {account_id: [] for account_id in accounts}

    async def follow(account_id: int) -> None:
        cursor = 0
        while True:
            running = any(writer.returncode is None for writer in writers)
            page = await read_after(database, account_id, cursor, limit=5)
            received[account_id].extend(page)
            cursor = page[-1] if page else cursor
            if not page and not running:
                return
            await asyncio.sleep(0)

    async def wait_writers() -> None:
        for writer in writers:
            assert await writer.wait() == 0

    await asyncio.wait_for(asyncio.gather(wait_writers(), *(follow(a) for a in accounts)), 120)
    async with database.sessions() as session:
        for account_id in accounts:
            stored = list(
                await session.scalars(
                    select(Event.id).where(Event.account_id == account_id).order_by(Event.id)
                )
            )
            assert received[account_id] == stored, f"account {account_id}: the reader missed or repeated"
    assert sum(len(found) for found in received.values()) >= 4 * 60
