"""Helpers of the pacing tests: a small budget (so that a test spends it in a second), two engines."""

from __future__ import annotations

import asyncio
from typing import Any

from m365connect.microsoft.pacing import PaceScope
from m365connect.pacing.pacer import PacingPolicy
from m365connect.pacing.store import PaceStore

APP, TENANT = "0c1d2e3f-4a5b-4c6d-8e7f-901a2b3c4d5e", "1d2e3f40-5b6c-4d7e-9f80-a12b3c4d5e6f"
SCOPE = PaceScope(APP, TENANT, interactive=True)
BACKGROUND = PaceScope(APP, TENANT, interactive=False)
# 20 units per second, a bucket of 10 (20 per 0.5 s at a safety factor of 1).
UNITS, WINDOW = 10, 0.5


def policy(**changes: Any) -> PacingPolicy:
    """A budget small enough to be spent within a test; polls every 10 ms; 4 Outlook slots, fixed."""
    values: dict[str, Any] = {
        "directory_units": UNITS,
        "directory_window_seconds": WINDOW,
        "safety": 1.0,
        "poll_seconds": 0.01,
        "lease_seconds": 30.0,
        "outlook_max_concurrency": 4,  # a fixed limit of 4 unless a test lets it grow
    }
    return PacingPolicy(**{**values, **changes})


def within_budget(times: list[float], *, start: float, capacity: float, rate: float) -> list[str]:
    """The admissions (one unit each) past what a bucket full at `start` allows by their time."""
    late = []
    for count, at in enumerate(sorted(times), start=1):
        allowed = capacity + rate * max(0.0, at - start) + 1  # one unit of clock skew
        if count > allowed:
            late.append(f"{count} units by +{at - start:.3f} s (at most {allowed:.1f})")
    return late


async def interactive_steps_overtake(store: PaceStore, key: str) -> None:
    """With 200 background steps queued on one process's store, an interactive request's steps (stamp, take,
    release) finish while most of those are still waiting (on one connection they finished after all 200).
    3 rounds."""
    await store.seed(key, capacity=UNITS, slots=4, slot_limit=4)
    done = 0

    async def background() -> None:
        nonlocal done
        await store.state(key, interactive_seconds=None)
        done += 1

    for _round in range(3):
        done = 0
        queued = [asyncio.create_task(background()) for _ in range(200)]
        await asyncio.sleep(0)  # all 200 are in the background lane's line
        assert await store.state(key, interactive_seconds=1.0) is not None
        taken = await store.take_slots(
            key, holder="interactive", n=1, lease=30.0, max_slots=4, interactive=True
        )
        assert len(taken.slots) == 1
        await store.release(key, holder="interactive", raise_to=None, max_slots=4, interactive=True)
        finished_before = done
        await asyncio.gather(*queued)
        assert done == 200
        assert finished_before < 100, finished_before
