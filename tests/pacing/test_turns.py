"""Turns (pacing/turns.py): one caller at a time (on a store's connection: releases first; in a budget's
line: interactive callers first), the rest in the order asked; a cancelled waiter neither keeps the turn
nor blocks the ones behind it (a deadline passing as the turn came round once raised ValueError)."""

from __future__ import annotations

import asyncio

from m365connect.pacing.turns import Turns


async def _step(lock: Turns, name: str, ran: list[str], *, first: bool = False, hold: float = 0.0) -> None:
    async with lock.turn(first=first):
        ran.append(name)
        await asyncio.sleep(hold)


async def test_releases_go_before_the_steps_asked_for_earlier_and_each_kind_keeps_its_order() -> None:
    for _ in range(3):
        lock, ran = Turns(), []
        holder = asyncio.create_task(_step(lock, "busy", ran, hold=0.01))
        await asyncio.sleep(0)  # it has the connection
        names = ["take1", "release1", "take2", "release2", "take3", "release3"]
        await asyncio.gather(
            holder, *(_step(lock, name, ran, first=name.startswith("release")) for name in names)
        )
        assert ran == ["busy", "release1", "release2", "release3", "take1", "take2", "take3"]


async def test_one_step_at_a_time() -> None:
    lock, inside, most = Turns(), 0, 0

    async def step(first: bool) -> None:
        nonlocal inside, most
        async with lock.turn(first=first):
            inside += 1
            most = max(most, inside)
            await asyncio.sleep(0)
            inside -= 1

    await asyncio.gather(*(step(i % 3 == 0) for i in range(60)))
    assert most == 1


async def test_a_cancelled_waiter_neither_keeps_the_turn_nor_blocks_the_next() -> None:
    """A waiter cancelled (as its deadline's timeout does) at three points: in the queue, passed over by
    the holder leaving before it wakes (the line's former lock raised ValueError there); in the queue,
    waking first; and after the turn was handed to it, before it ran (it passes the turn on)."""
    for when in ("passed over", "woken first", "handed"):
        lock, ran = Turns(), []
        async with lock.turn():
            cancelled = asyncio.create_task(_step(lock, "cancelled", ran, first=True))
            behind = asyncio.create_task(_step(lock, "behind", ran))
            await asyncio.sleep(0)  # both wait
            if when != "handed":
                cancelled.cancel()
            if when == "woken first":
                await asyncio.sleep(0)  # it wakes, cancelled, and leaves the queue
        if when == "handed":
            cancelled.cancel()  # the turn went to it as the block above ended
        async with asyncio.timeout(1):  # with the turn kept by the cancelled waiter: never
            await asyncio.gather(behind, cancelled, return_exceptions=True)
        assert cancelled.cancelled(), when
        assert ran == ["behind"], when
        async with asyncio.timeout(1):  # and the turn is free again
            await _step(lock, "after", ran)
        assert ran == ["behind", "after"], when
