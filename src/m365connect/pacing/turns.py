"""`Turns`: one caller at a time, those marked `first` ahead of the others, each group in the order asked.

Two places need it, and asyncio's `Lock` (one queue, no priority) serves neither:
- a store's connection (pacing/repository.py, pacing/redis_store.py): releases first. A release frees
  what the waiting takes wait for, and its slots stay held at the store until it has run, idle at
  Microsoft; in the order asked it waited behind every take and poll queued before it (a release took
  58-68 ms on average in 20,000-mailbox imports at 50 ms latency, 37-40 ms first: docs/performance.md,
  "Releases first, and 256 connections"). Takes among themselves keep their order (a process's takes
  reach the store in the order asked), and so do releases.
- a budget's line of callers in a process (pacing/pacer.py): interactive callers first.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class Turns:
    """One caller at a time; callers marked `first` go before the others, each group in the order asked.
    A caller cancelled while it waits (its deadline passed) leaves its place, and one cancelled after
    its turn was handed to it passes the turn on."""

    def __init__(self) -> None:
        self._busy = False
        self._waiting: dict[bool, deque[asyncio.Future[None]]] = {True: deque(), False: deque()}

    @asynccontextmanager
    async def turn(self, *, first: bool = False) -> AsyncIterator[None]:
        """Wait for this caller's turn and hold it for the block."""
        await self._acquire(first)
        try:
            yield
        finally:
            self._next()

    async def _acquire(self, first: bool) -> None:
        if not self._busy:  # (nobody waits while no caller has the turn)
            self._busy = True
            return
        queue = self._waiting[first]
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue.append(waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self._next()  # handed the turn, then cancelled: pass it on
            elif waiter in queue:  # (a cancelled waiter may have been passed over already)
                queue.remove(waiter)
            raise

    def _next(self) -> None:
        for first in (True, False):
            queue = self._waiting[first]
            while queue:
                waiter = queue.popleft()
                if not waiter.done():
                    waiter.set_result(None)
                    return
        self._busy = False
