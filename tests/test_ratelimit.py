"""Per-API-key rate limiting: token buckets in process and in a real Redis shared by two app instances."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import httpx
import pytest
import redis.asyncio as aioredis

from m365connect.api.ratelimit import (
    DEFAULT_REDIS_PREFIX,
    FAILURES_REDIS_PREFIX,
    MemoryRateLimiter,
    Policy,
    RedisRateLimiter,
)
from m365connect.app import create_app
from m365connect.settings import Settings
from m365connect.state import open_state
from tests.factories import CREDENTIALS
from tests.helpers import assert_generic_error, headers
from tests.processes import free_port
from tests.redis_support import PATIENT_SECONDS, REDIS_URL, redis_admin

RATE_HEADERS = ("ratelimit-limit", "ratelimit-remaining", "ratelimit-reset")


@pytest.fixture
def backend() -> str:
    """The limiter does not touch the database: one backend is enough."""
    return "sqlite"


class Clock:
    """A hand-driven monotonic clock."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def redis_client() -> AsyncIterator[aioredis.Redis]:
    """A client of the Redis on 127.0.0.1:6379 (.ci/run starts it)."""
    async with redis_admin() as client:
        yield client


@pytest.fixture
def prefix() -> str:
    """A Redis key prefix of this test only (other runs may share the server)."""
    return f"m365connect-test:{secrets.token_hex(6)}:"


@asynccontextmanager
async def _apps(settings: Settings, count: int, **limits: object) -> AsyncIterator[list[httpx.AsyncClient]]:
    limited = settings.model_copy(update=limits)
    async with AsyncExitStack() as stack:
        clients = []
        for _ in range(count):
            state = await stack.enter_async_context(open_state(limited))
            app = create_app(limited, state=state)
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            http = httpx.AsyncClient(transport=transport, base_url="http://m365connect.test")
            clients.append(await stack.enter_async_context(http))
        yield clients


def _figures(response: httpx.Response) -> tuple[int, int, int]:
    limit, remaining, reset = (int(response.headers[name]) for name in RATE_HEADERS)
    return limit, remaining, reset


async def test_memory_bucket_allows_the_burst_then_refills_at_the_rate() -> None:
    clock = Clock()
    limiter = MemoryRateLimiter(Policy(per_minute=60, burst=3), clock=clock)
    first = [await limiter.take("k") for _ in range(3)]
    assert [d.allowed for d in first] == [True, True, True]
    assert [d.remaining for d in first] == [2, 1, 0]
    assert [d.reset_seconds for d in first] == [1, 2, 3]
    refused = await limiter.take("k")
    assert (refused.allowed, refused.remaining, refused.retry_after) == (False, 0, 1)
    assert (await limiter.take("other")).allowed  # buckets are per key
    clock.now += 0.5
    assert not (await limiter.take("k")).allowed
    clock.now += 0.5
    assert (await limiter.take("k")).allowed
    clock.now += 3600
    assert (await limiter.take("k")).remaining == 2  # never more than the burst


async def test_redis_bucket_is_atomic_and_its_key_expires(redis_client: aioredis.Redis, prefix: str) -> None:
    limiter = RedisRateLimiter.from_url(
        REDIS_URL, Policy(per_minute=60, burst=5), prefix=prefix, timeout=PATIENT_SECONDS
    )
    try:
        # 20 concurrent takes on one bucket: exactly the burst gets through.
        decisions = await asyncio.gather(*(limiter.take("k") for _ in range(20)))
        assert all(d is not None for d in decisions)
        assert sum(1 for d in decisions if d and d.allowed) == 5
        refused = [d for d in decisions if d and not d.allowed]
        assert all(d.retry_after == 1 and d.remaining == 0 for d in refused)
        ttl_ms = await redis_client.pttl(f"{prefix}k")
        assert 0 < ttl_ms <= 5_000 + 1_000  # empty bucket: full again in 5 s, plus a second of slack
        await asyncio.sleep(1.05)
        again = await limiter.take("k")
        assert again is not None
        assert again.allowed
    finally:
        await limiter.aclose()
        await redis_client.delete(f"{prefix}k")


async def test_over_the_limit_is_429_with_retry_after_and_ratelimit_headers(
    settings: Settings, api_key: str, other_api_key: str
) -> None:
    # One token a minute: nothing refills while the test runs, however slow the machine.
    async with _apps(settings, 1, rate_limit_burst=3, rate_limit_per_minute=1) as (http,):
        answered = [await http.get(CREDENTIALS, headers=headers(api_key)) for _ in range(4)]
        assert [r.status_code for r in answered] == [200, 200, 200, 429]
        assert [_figures(r) for r in answered[:3]] == [(3, 2, 60), (3, 1, 120), (3, 0, 180)]
        refused = answered[3]
        assert_generic_error(refused, status=429, title="Too Many Requests")
        assert refused.headers["retry-after"] == "60"
        assert refused.headers.get_list("retry-after") == ["60"]
        assert _figures(refused)[:2] == (3, 0)
        assert "x-request-id" in refused.headers
        # Another API key has its own budget.
        assert (await http.get(CREDENTIALS, headers=headers(other_api_key))).status_code == 200


async def test_retry_after_is_honest(settings: Settings, api_key: str) -> None:
    # A token every 2 s: the second request, sent at once, is refused; after Retry-After it is served.
    async with _apps(settings, 1, rate_limit_burst=1, rate_limit_per_minute=30) as (http,):
        assert (await http.get(CREDENTIALS, headers=headers(api_key))).status_code == 200
        refused = await http.get(CREDENTIALS, headers=headers(api_key))
        assert refused.status_code == 429
        assert refused.headers["retry-after"] in {"1", "2"}
        await asyncio.sleep(int(refused.headers["retry-after"]) + 0.05)
        assert (await http.get(CREDENTIALS, headers=headers(api_key))).status_code == 200


async def test_health_endpoints_and_refused_keys_are_not_limited(settings: Settings, api_key: str) -> None:
    async with _apps(settings, 1, rate_limit_burst=1, rate_limit_per_minute=1) as (http,):
        for path in ("/healthz", "/readyz"):
            answers = [await http.get(path) for _ in range(10)]
            assert {r.status_code for r in answers} == {200}
            assert not any(name in r.headers for r in answers for name in RATE_HEADERS)
        unknown = await http.get(CREDENTIALS, headers=headers("m365c_aaaaaaaaaaaa_nope"))
        assert unknown.status_code == 401
        assert not any(name in unknown.headers for name in RATE_HEADERS)
        assert (await http.get(CREDENTIALS, headers=headers(api_key))).status_code == 200
        assert (await http.get(CREDENTIALS, headers=headers(api_key))).status_code == 429


async def test_two_instances_sharing_redis_share_one_budget(
    settings: Settings, api_key: str, redis_client: aioredis.Redis
) -> None:
    async with _apps(
        settings,
        2,
        redis_url=REDIS_URL,
        redis_timeout_seconds=PATIENT_SECONDS,
        rate_limit_burst=6,
        rate_limit_per_minute=6,
    ) as clients:
        statuses = [
            (await clients[i % 2].get(CREDENTIALS, headers=headers(api_key))).status_code for i in range(10)
        ]
        assert statuses == [200] * 6 + [429] * 4
        last = await clients[1].get(CREDENTIALS, headers=headers(api_key))
        assert last.status_code == 429
        assert int(last.headers["retry-after"]) == 10  # one token every 10 s at 6 a minute
    prefix = api_key.split("_")[1]
    keys = [key async for key in redis_client.scan_iter(match=f"m365connect:ratelimit:*:{prefix}")]
    assert len(keys) == 1
    assert 0 < await redis_client.pttl(keys[0]) <= 61_000
    await redis_client.delete(*keys)


async def test_unreachable_redis_fails_open_with_one_warning(
    settings: Settings, api_key: str, caplog: pytest.LogCaptureFixture
) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    caplog.set_level(logging.WARNING, logger="m365connect.api.ratelimit")
    async with _apps(settings, 1, redis_url=dead, rate_limit_burst=1, rate_limit_per_minute=1) as (http,):
        answers = [await http.get(CREDENTIALS, headers=headers(api_key)) for _ in range(5)]
    assert [r.status_code for r in answers] == [200] * 5
    assert not any(name in r.headers for r in answers for name in RATE_HEADERS)
    warnings = [r for r in caplog.records if r.getMessage() == "ratelimit.redis.unavailable"]
    # One per limiter: the API keys' buckets and the addresses' failure budgets (the gate checks it first).
    assert sorted(getattr(r, "keys", "") for r in warnings) == [FAILURES_REDIS_PREFIX, DEFAULT_REDIS_PREFIX]
    assert api_key not in caplog.text


@pytest.mark.parametrize("seconds", [0, -1, 31])
def test_the_redis_timeout_is_a_positive_number_of_seconds_up_to_30(seconds: float) -> None:
    with pytest.raises(ValueError, match="redis_timeout_seconds"):
        Settings(redis_timeout_seconds=seconds)


async def test_the_redis_timeout_setting_reaches_both_limiters(settings: Settings) -> None:
    """M365CONNECT_REDIS_TIMEOUT_SECONDS: the API keys' limiter and the failure budget connect and wait
    that long (the pacer's Redis store: tests/pacing/test_adaptive_outlook.py)."""
    async with open_state(
        settings.model_copy(update={"redis_url": REDIS_URL, "redis_timeout_seconds": 2.5})
    ) as state:
        for limiter in (state.limiter, state.failures):
            assert isinstance(limiter, RedisRateLimiter)
            kwargs = limiter._client.connection_pool.connection_kwargs
            assert (kwargs["socket_timeout"], kwargs["socket_connect_timeout"]) == (2.5, 2.5)
