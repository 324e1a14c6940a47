"""Turns (pacing/turns.py): one caller at a time (on a store's connection: releases first; in a budget's
line: interactive callers first), the rest in the order asked; a cancelled waiter neither keeps the turn
nor blocks the ones behind it (a deadline passing as the turn came round once raised ValueError)."""

from __future__ import annotations

import asyncio

from m365connect.pacing.turns import Turns


async def _step(lock: Turns, name: str, ran: list[str], *, release: bool = False, hold: float = 0.0) -> None:
    async with lock.turn(first=release):
        ran.append(name)
        await asyncio.sleep(hold)


async def test_releases_go_before_the_steps_asked_for_earlier_and_each_kind_keeps_its_order() -> None:
    for _ in range(3):
        lock, ran = Turns(), []
        first = asyncio.create_task(_step(lock, "busy", ran, hold=0.01))
        await asyncio.sleep(0)  # it has the connection
        names = ["take1", "release1", "take2", "release2", "take3", "release3"]
        await asyncio.gather(
            first, *(_step(lock, name, ran, release=name.startswith("release")) for name in names)
        )
        assert ran == ["busy", "release1", "release2", "release3", "take1", "take2", "take3"]


async def test_one_step_at_a_time() -> None:
    lock, inside, most = Turns(), 0, 0

    async def step(release: bool) -> None:
        nonlocal inside, most
        async with lock.turn(first=release):
            inside += 1
            most = max(most, inside)
            await asyncio.sleep(0)
            inside -= 1

    await asyncio.gather(*(step(i % 3 == 0) for i in range(60)))
    assert most == 1


async def test_a_waiter_cancelled_in_the_queue_is_passed_over() -> None:
    """Cancelled while it waits, and passed over by the step ending before it wakes (or after)."""
    for passed_over_first in (True, False):
        lock, ran = Turns(), []
        async with lock.turn():
            cancelled = asyncio.create_task(_step(lock, "cancelled", ran, release=True))
            behind = asyncio.create_task(_step(lock, "behind", ran))
            await asyncio.sleep(0)  # both wait
            cancelled.cancel()
            if not passed_over_first:
                await asyncio.sleep(0)  # it wakes, cancelled, and leaves the queue
        async with asyncio.timeout(1):
            await asyncio.gather(behind, cancelled, return_exceptions=True)
        assert cancelled.cancelled()
        assert ran == ["behind"]
        async with asyncio.timeout(1):  # and the connection is free again
            await _step(lock, "after", ran)
        assert ran == ["behind", "after"]


async def test_a_waiter_cancelled_after_being_handed_the_connection_passes_it_on() -> None:
    lock, ran = Turns(), []
    async with lock.turn():
        handed = asyncio.create_task(_step(lock, "handed", ran, release=True))
        behind = asyncio.create_task(_step(lock, "behind", ran))
        await asyncio.sleep(0)  # both wait
    # The connection was handed to `handed` when the step above ended; cancel it before it runs.
    handed.cancel()
    async with asyncio.timeout(1):  # with the connection kept by the cancelled waiter, never
        await asyncio.gather(handed, behind, return_exceptions=True)
    assert handed.cancelled()
    assert ran == ["behind"]
    async with asyncio.timeout(1):
        await _step(lock, "after", ran)
    assert ran == ["behind", "after"]
