"""The pacing tables' statements (pacing/models.py), in each dialect, and the database store of the pacer
(`DatabaseStore`, a `PaceStore`: pacing/store.py says what each step does). Each step is one statement on
the database's clock, run on an autocommit connection the store holds."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from m365connect.db.errors import DatabaseUnreachable
from m365connect.pacing.store import BudgetState, StoreUnavailable, Taken
from m365connect.pacing.turns import Turns

_ERRORS = (SQLAlchemyError, DatabaseUnreachable, OSError, TimeoutError)


class Statements:
    """The SQL of the pacer in one dialect: the same statements, with the database's clock and min/max."""

    def __init__(self, dialect: str) -> None:
        if dialect == "postgresql":
            now = "CAST(extract(epoch from statement_timestamp()) AS DOUBLE PRECISION)"
            least, greatest, skip_locked = "LEAST", "GREATEST", "FOR UPDATE SKIP LOCKED"
        else:
            now = "((julianday('now') - 2440587.5) * 86400.0)"
            least, greatest, skip_locked = "min", "max", ""

        def number(name: str) -> str:
            return f"CAST(:{name} AS DOUBLE PRECISION)"

        def integer(name: str) -> str:
            return f"CAST(:{name} AS INTEGER)"

        rate = f"{number('rate')} * (CASE WHEN slow_until > {now} THEN {number('slow')} ELSE 1.0 END)"
        refilled = f"{least}({number('cap')}, tokens + {greatest}(0.0, {now} - at) * {rate})"
        # The slots a take may use: below the budget's limit, or below limit + n when no hold runs (a
        # probe: used only when the lower slots are held, as the lowest free ones are taken first).
        cap = (
            f"(SELECT {least}({integer('max')}, b.slot_limit + CASE WHEN b.hold_until <= {now} "
            f"THEN {integer('n')} ELSE 0 END) FROM graph_pace_budgets b WHERE b.key = :key)"
        )
        free = f"key = :key AND slot < {cap} AND (holder IS NULL OR expires_at <= {now})"
        limit = "(SELECT b.slot_limit FROM graph_pace_budgets b WHERE b.key = :key)"

        # How many of the key's slots are held now.
        held = (
            "(SELECT COUNT(*) FROM graph_pace_slots s WHERE s.key = :key "
            f"AND s.holder IS NOT NULL AND s.expires_at > {now})"
        )

        self.seed_budget = text(
            "INSERT INTO graph_pace_budgets "
            "(key, tokens, at, paused_until, slow_until, interactive_until, slot_limit, hold_until) "
            f"VALUES (:key, {number('cap')}, {now}, 0, 0, 0, {integer('limit')}, 0) "
            "ON CONFLICT (key) DO NOTHING"
        )
        self.seed_slot = text(
            "INSERT INTO graph_pace_slots (key, slot, holder, expires_at) "
            "VALUES (:key, :slot, NULL, 0) ON CONFLICT (key, slot) DO NOTHING"
        )
        self.take_units = text(
            f"UPDATE graph_pace_budgets SET tokens = {refilled} - {number('cost')}, at = {now} "
            f"WHERE key = :key AND paused_until <= {now} "
            f"AND ({integer('interactive')} = 1 OR interactive_until <= {now}) "
            f"AND {refilled} >= {number('cost')} RETURNING tokens"
        )
        # The chosen slots are a materialised CTE: as a plain IN (subquery), PostgreSQL may run the LIMIT
        # again for each row it updates (a nested loop) and take more slots than asked.
        self.take_slots = text(
            f"WITH chosen AS MATERIALIZED (SELECT slot FROM graph_pace_slots WHERE {free} "
            f"ORDER BY slot LIMIT {integer('n')} {skip_locked}) "
            f"UPDATE graph_pace_slots SET holder = :holder, expires_at = {now} + {number('lease')} "
            f"WHERE {free} AND slot IN (SELECT slot FROM chosen) "
            f"AND (SELECT COUNT(*) FROM graph_pace_slots WHERE {free}) >= {integer('n')} "
            "AND NOT EXISTS (SELECT 1 FROM graph_pace_budgets b WHERE b.key = :key "
            f"AND (b.paused_until > {now} "
            f"OR ({integer('interactive')} = 0 AND b.interactive_until > {now}))) "
            f"RETURNING slot, {limit}"
        )
        self.release = text(
            "UPDATE graph_pace_slots SET holder = NULL, expires_at = 0 WHERE key = :key AND holder = :holder"
        )
        self.raise_limit = text(
            f"UPDATE graph_pace_budgets SET slot_limit = {least}({integer('max')}, "
            f"{greatest}(slot_limit, {integer('raise_to')})) WHERE key = :key AND hold_until <= {now} "
            "RETURNING slot_limit"
        )
        columns = f"tokens, at, paused_until, slow_until, interactive_until, {now}, slot_limit, hold_until"
        self.state = text(f"SELECT {columns} FROM graph_pace_budgets WHERE key = :key")
        self.mark_interactive = text(
            f"UPDATE graph_pace_budgets SET interactive_until = "
            f"{greatest}(interactive_until, {now} + {number('fresh')}) WHERE key = :key "
            f"RETURNING {columns}"
        )
        paused = f"{number('pause')} > 0"
        halving = f"{integer('halve')} = 1 AND slot_limit >= {integer('sent_under')}"
        # A refused probe: back to the limit it probed above; any other 429: half of what is held.
        halved = (
            f"{greatest}(1, CASE WHEN {integer('probe')} = 1 "
            f"THEN {least}(slot_limit, {integer('sent_under')}) ELSE {least}(slot_limit, {held} / 2) END)"
        )
        self.pushback = text(
            "UPDATE graph_pace_budgets SET "
            f"paused_until = CASE WHEN {paused} THEN {greatest}(paused_until, {now} + {number('pause')}) "
            "ELSE paused_until END, "
            f"tokens = CASE WHEN {paused} AND {integer('empty')} = 1 THEN 0 ELSE tokens END, "
            f"at = CASE WHEN {paused} AND {integer('empty')} = 1 THEN {now} ELSE at END, "
            f"slow_until = CASE WHEN {number('slow_for')} > 0 "
            f"THEN {greatest}(slow_until, {now} + {number('slow_for')}) ELSE slow_until END, "
            f"slot_limit = CASE WHEN {halving} THEN {halved} ELSE slot_limit END, "
            f"hold_until = CASE WHEN {halving} "
            f"THEN {greatest}(hold_until, {now} + {number('hold_for')}) ELSE hold_until END "
            "WHERE key = :key"
        )


class PaceRepository:
    """Runs the statements on a connection the caller holds."""

    def __init__(self, dialect: str) -> None:
        self._sql = Statements(dialect)
        self._dialect = dialect

    async def prepare(self, connection: AsyncConnection) -> None:
        """Set up the pacer's own connection. PostgreSQL: commits without waiting for the WAL flush
        (`synchronous_commit off`): a crash may lose the last few milliseconds of budget bookkeeping,
        which a restarted service rebuilds anyway, and each statement no longer waits for a disk flush."""
        if self._dialect == "postgresql":
            await connection.execute(text("SET synchronous_commit TO off"))

    async def seed(
        self, connection: AsyncConnection, key: str, *, capacity: float, slots: int, slot_limit: int = 4
    ) -> None:
        """Create a budget's row (full) and its `slots` slot rows, unless another process did."""
        await connection.execute(self._sql.seed_budget, {"key": key, "cap": capacity, "limit": slot_limit})
        if slots:
            rows = [{"key": key, "slot": slot} for slot in range(slots)]
            await connection.execute(self._sql.seed_slot, rows)

    async def take_units(self, connection: AsyncConnection, params: dict[str, Any]) -> bool:
        """Refill the bucket and take `cost` units, if they are there and nothing blocks this caller."""
        return (await connection.execute(self._sql.take_units, params)).first() is not None

    async def take_slots(self, connection: AsyncConnection, params: dict[str, Any]) -> Sequence[Any]:
        """Hold `n` free slots for `holder` (all or, on a PostgreSQL race, fewer; none when blocked)."""
        return (await connection.execute(self._sql.take_slots, params)).all()

    async def release(self, connection: AsyncConnection, *, key: str, holder: str) -> None:
        """Free the slots `holder` holds."""
        await connection.execute(self._sql.release, {"key": key, "holder": holder})

    async def raise_limit(
        self, connection: AsyncConnection, *, key: str, raise_to: int, max_slots: int
    ) -> bool:
        """A probe was proven: let `raise_to` calls in flight, unless a hold runs."""
        params = {"key": key, "raise_to": raise_to, "max": max_slots}
        return (await connection.execute(self._sql.raise_limit, params)).first() is not None

    async def state(
        self, connection: AsyncConnection, *, key: str, interactive_seconds: float | None
    ) -> BudgetState | None:
        """The budget's row; with `interactive_seconds`, also stamp that an interactive caller waits."""
        if interactive_seconds is not None:
            params = {"key": key, "fresh": interactive_seconds}
            row = (await connection.execute(self._sql.mark_interactive, params)).first()
        else:
            row = (await connection.execute(self._sql.state, {"key": key})).first()
        if row is None:
            return None
        tokens, at, paused_until, slow_until, interactive_until, now, slot_limit, hold_until = row
        return BudgetState(
            tokens=float(tokens),
            at=float(at),
            paused_until=float(paused_until),
            slow_until=float(slow_until),
            interactive_until=float(interactive_until),
            now=float(now),
            slot_limit=int(slot_limit),
            hold_until=float(hold_until),
        )

    async def pushback(self, connection: AsyncConnection, params: dict[str, Any]) -> None:
        """Pause the budget until now + `pause` (emptying a bucket), slow it for `slow_for` seconds."""
        await connection.execute(self._sql.pushback, params)


@dataclass
class _Lane:
    """One held connection and the lock that lets one caller use it at a time."""

    connection: AsyncConnection | None = None
    lock: Turns = field(default_factory=Turns)


class DatabaseStore:
    """The pacer's budgets in the service's database (PostgreSQL, or one SQLite file for every process).

    Holds autocommit connections rather than checking one out per statement: on PostgreSQL a checkout adds
    the pool's pre-ping and the autocommit switch, three times the statement itself. Two lanes, each one
    connection used by one caller at a time: background callers share one, interactive callers (a
    synchronous request is waiting) have their own, opened at their first step. With one lane, a 10-item
    request's steps queued behind those of 100 job chunks. A connection that failed, or whose statement was
    interrupted, is closed and replaced at the next use. Failures are raised as `StoreUnavailable`.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine.execution_options(isolation_level="AUTOCOMMIT")
        self.repository = PaceRepository(engine.dialect.name)
        self._lanes = {False: _Lane(), True: _Lane()}  # by `interactive`

    async def seed(
        self, key: str, *, capacity: float, slots: int, slot_limit: int, interactive: bool = False
    ) -> None:
        """See PaceStore.seed."""
        async with self._connected(interactive) as connection:
            await self.repository.seed(connection, key, capacity=capacity, slots=slots, slot_limit=slot_limit)

    async def take_units(
        self, key: str, *, cap: float, rate: float, slow: float, cost: float, interactive: bool
    ) -> bool:
        """See PaceStore.take_units."""
        params = {
            "key": key,
            "cap": cap,
            "rate": rate,
            "slow": slow,
            "cost": cost,
            "interactive": int(interactive),
        }
        async with self._connected(interactive) as connection:
            return await self.repository.take_units(connection, params)

    async def take_slots(
        self,
        key: str,
        *,
        holder: str,
        n: int,
        lease: float,
        max_slots: int,
        interactive: bool,
    ) -> Taken:
        """See PaceStore.take_slots (a PostgreSQL race that left fewer than `n` gives them back)."""
        params = {
            "key": key,
            "holder": holder,
            "lease": lease,
            "n": n,
            "max": max_slots,
            "interactive": int(interactive),
        }
        async with self._connected(interactive) as connection:
            rows = await self.repository.take_slots(connection, params)
            if rows and len(rows) != n:
                await self.repository.release(connection, key=key, holder=holder)
                rows = []
        if not rows:
            return Taken((), 0)
        return Taken(tuple(int(row[0]) for row in rows), int(rows[0][1]))

    async def release(
        self,
        key: str,
        *,
        holder: str,
        raise_to: int | None,
        max_slots: int,
        interactive: bool = False,
    ) -> bool:
        """See PaceStore.release."""
        raised = False
        async with self._connected(interactive, release=True) as connection:
            if raise_to is not None:
                raised = await self.repository.raise_limit(
                    connection, key=key, raise_to=raise_to, max_slots=max_slots
                )
            await self.repository.release(connection, key=key, holder=holder)
        return raised

    async def state(self, key: str, *, interactive_seconds: float | None) -> BudgetState | None:
        """See PaceStore.state."""
        async with self._connected(interactive_seconds is not None) as connection:
            return await self.repository.state(connection, key=key, interactive_seconds=interactive_seconds)

    async def pushback(
        self,
        key: str,
        *,
        pause: float,
        empty: bool,
        slow_for: float,
        halve: bool,
        hold_for: float,
        sent_under: int = 0,
        probe: bool = False,
        interactive: bool = False,
    ) -> None:
        """See PaceStore.pushback."""
        params = {
            "sent_under": sent_under,
            "probe": int(probe),
            "key": key,
            "pause": pause,
            "empty": int(empty),
            "slow_for": slow_for,
            "halve": int(halve),
            "hold_for": hold_for,
        }
        async with self._connected(interactive) as connection:
            await self.repository.pushback(connection, params)

    @asynccontextmanager
    async def _connected(self, interactive: bool, *, release: bool = False) -> AsyncIterator[AsyncConnection]:
        """The connection of the caller's lane, one statement sequence at a time in this process (releases
        first: pacing/turns.py)."""
        lane = self._lanes[interactive]
        async with lane.lock.turn(first=release):
            try:
                if lane.connection is None:
                    opened = await self._engine.connect()
                    try:
                        await self.repository.prepare(opened)
                    except BaseException:
                        await asyncio.shield(opened.close())
                        raise
                    lane.connection = opened
                try:
                    yield lane.connection
                except BaseException:
                    broken, lane.connection = lane.connection, None
                    with contextlib.suppress(Exception):
                        await asyncio.shield(broken.close())
                    raise
            except _ERRORS as exc:
                raise StoreUnavailable(type(exc).__name__) from exc

    async def aclose(self) -> None:
        """Return the held connections to their pool (before the engine is disposed)."""
        for lane in self._lanes.values():
            async with lane.lock.turn():
                connection, lane.connection = lane.connection, None
            if connection is not None:
                with contextlib.suppress(*_ERRORS):
                    await connection.close()
