"""The pacing tables: one row per budget (directory bucket, or an Outlook scope's pause and marker), and
the Outlook concurrency slots as leases.

Times are seconds since the epoch on the database's clock (a float): every process compares them with
the same clock, whatever its own says.
"""

from __future__ import annotations

from sqlalchemy import Float, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from m365connect.db.base import Base


class PaceBudget(Base):
    """One budget: `directory/{app}/{tenant}` (a token bucket of resource units) or `outlook/{app}`.

    `tokens` and `at`: the bucket's units after the last take, and when (unused for Outlook).
    `paused_until`: a 429's Retry-After, for every process. `slow_until`: Microsoft said the limit is
    near (x-ms-throttle-limit-percentage above the threshold); the bucket refills slower until then.
    `interactive_until`: an interactive caller is waiting (refreshed while it waits); background
    callers take nothing until then. `slot_limit`: the Outlook calls let in flight now (adaptive,
    pacing/store.py); `hold_until`: no probing above it before then (an Outlook 429).
    """

    __tablename__ = "graph_pace_budgets"

    key: Mapped[str] = mapped_column(String(300), primary_key=True)
    tokens: Mapped[float] = mapped_column(Float)
    at: Mapped[float] = mapped_column(Float)
    paused_until: Mapped[float] = mapped_column(Float)
    slow_until: Mapped[float] = mapped_column(Float)
    interactive_until: Mapped[float] = mapped_column(Float)
    slot_limit: Mapped[int] = mapped_column(Integer, default=4, server_default="4")
    hold_until: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")


class PaceSlot(Base):
    """One Outlook concurrency slot of a budget: free (holder null or lease expired) or held until
    `expires_at`, so that a process killed while holding it frees it when the lease runs out."""

    __tablename__ = "graph_pace_slots"

    key: Mapped[str] = mapped_column(String(300), primary_key=True)
    slot: Mapped[int] = mapped_column(Integer, primary_key=True)
    holder: Mapped[str | None] = mapped_column(String(64), nullable=True)
    expires_at: Mapped[float] = mapped_column(Float)
