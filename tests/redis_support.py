"""The Redis of the tests (127.0.0.1:6379, which .ci/run starts): a plain client to read and clean keys."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import redis.asyncio as aioredis

REDIS_URL = "redis://127.0.0.1:6379/0"

# The timeout of the stores and limiters of tests about what Redis holds, not about a slow Redis. The
# product's half second is a test of its own (a Redis that does not answer); on a loaded 2-CPU CI machine a
# process can stall longer than that while 40 connections open at once, and a concurrency test failed so.
PATIENT_SECONDS = 10.0


@asynccontextmanager
async def redis_admin() -> AsyncIterator[aioredis.Redis]:
    """A client of the tests' Redis (text answers); a test fails plainly when Redis is not running."""
    client = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        await client.ping()
    except OSError as exc:  # pragma: no cover - environment problem, say so plainly
        await client.aclose()
        pytest.fail(f"Redis is not running on 127.0.0.1:6379 ({exc}); .ci/run starts it")
    try:
        yield client
    finally:
        await client.aclose()


async def delete_keys(client: aioredis.Redis, pattern: str) -> list[str]:
    """Delete the keys matching `pattern`; the names deleted."""
    keys = sorted([key async for key in client.scan_iter(match=pattern)])
    if keys:
        await client.delete(*keys)
    return keys
