"""The pacing tables' statements (pacing/models.py), in each dialect: the same SQL with the database's
clock and its min/max. Each is one statement, run on an autocommit connection by the pacer."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection


@dataclass(frozen=True)
class BudgetState:
    """A budget row as read, with the database's clock (`now`) at the read."""

    tokens: float
    at: float
    paused_until: float
    slow_until: float
    interactive_until: float
    now: float


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
        free = f"key = :key AND slot < {integer('cap')} AND (holder IS NULL OR expires_at <= {now})"
        self.seed_budget = text(
            "INSERT INTO graph_pace_budgets (key, tokens, at, paused_until, slow_until, interactive_until) "
            f"VALUES (:key, {number('cap')}, {now}, 0, 0, 0) ON CONFLICT (key) DO NOTHING"
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
            "RETURNING slot"
        )
        self.release = text(
            "UPDATE graph_pace_slots SET holder = NULL, expires_at = 0 WHERE key = :key AND holder = :holder"
        )
        self.state = text(
            f"SELECT tokens, at, paused_until, slow_until, interactive_until, {now} "
            "FROM graph_pace_budgets WHERE key = :key"
        )
        self.mark_interactive = text(
            f"UPDATE graph_pace_budgets SET interactive_until = "
            f"{greatest}(interactive_until, {now} + {number('fresh')}) WHERE key = :key "
            f"RETURNING tokens, at, paused_until, slow_until, interactive_until, {now}"
        )
        paused = f"{number('pause')} > 0"
        self.pushback = text(
            "UPDATE graph_pace_budgets SET "
            f"paused_until = CASE WHEN {paused} THEN {greatest}(paused_until, {now} + {number('pause')}) "
            "ELSE paused_until END, "
            f"tokens = CASE WHEN {paused} AND {integer('empty')} = 1 THEN 0 ELSE tokens END, "
            f"at = CASE WHEN {paused} AND {integer('empty')} = 1 THEN {now} ELSE at END, "
            f"slow_until = CASE WHEN {number('slow_for')} > 0 "
            f"THEN {greatest}(slow_until, {now} + {number('slow_for')}) ELSE slow_until END "
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

    async def seed(self, connection: AsyncConnection, key: str, *, capacity: float, slots: int) -> None:
        """Create a budget's row (full) and its `slots` slot rows, unless another process did."""
        await connection.execute(self._sql.seed_budget, {"key": key, "cap": capacity})
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

    async def state(
        self, connection: AsyncConnection, *, key: str, interactive_seconds: float | None
    ) -> BudgetState | None:
        """The budget's row; with `interactive_seconds`, also stamp that an interactive caller waits."""
        if interactive_seconds is not None:
            params = {"key": key, "fresh": interactive_seconds}
            row = (await connection.execute(self._sql.mark_interactive, params)).first()
        else:
            row = (await connection.execute(self._sql.state, {"key": key})).first()
        return None if row is None else BudgetState(*(float(value) for value in row))

    async def pushback(self, connection: AsyncConnection, params: dict[str, Any]) -> None:
        """Pause the budget until now + `pause` (emptying a bucket), slow it for `slow_for` seconds."""
        await connection.execute(self._sql.pushback, params)
