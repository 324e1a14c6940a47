"""Per-API-key token buckets: in this process, or shared by every replica through Redis.

A bucket holds at most `burst` tokens and refills at `per_minute / 60` tokens a second; a request takes
one token or is refused. With Redis, one Lua script reads, refills, takes and writes the bucket
atomically on Redis's own clock (replicas' clocks never matter), and the key expires once the bucket
would be full again. When Redis cannot be reached the limiter fails open: the request is served without
a limit and a warning is logged (at most once per outage); Redis is tried again after a short pause.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

logger = logging.getLogger("m365connect.api.ratelimit")

DEFAULT_REDIS_PREFIX = "m365connect:ratelimit:"
# The per-address budget of failed authentications (refused API keys, failed console sign-ins).
FAILURES_REDIS_PREFIX = "m365connect:authfail:"
_REDIS_TIMEOUT_SECONDS = 0.5
_REDIS_RETRY_PAUSE_SECONDS = 5.0
_MEMORY_MAX_BUCKETS = 10_000

# KEYS[1] = bucket; ARGV = capacity, tokens per millisecond. Returns {allowed (0/1), tokens left (string)}.
_TAKE_SCRIPT = """
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local saved = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(saved[1]) or capacity
local at = tonumber(saved[2]) or now
if now > at then tokens = math.min(capacity, tokens + (now - at) * rate) end
local allowed = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(math.max(now, at)))
redis.call('PEXPIRE', KEYS[1], math.ceil((capacity - tokens) / rate) + 1000)
return {allowed, tostring(tokens)}
"""

# The same bucket read and refilled without taking a token: whether a failure budget has room left.
# KEYS[1] = bucket; ARGV = capacity, tokens per millisecond. Returns the tokens (string); writes nothing.
_PEEK_SCRIPT = """
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local saved = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(saved[1]) or capacity
local at = tonumber(saved[2]) or now
if now > at then tokens = math.min(capacity, tokens + (now - at) * rate) end
return tostring(tokens)
"""


@dataclass(frozen=True)
class Decision:
    """The outcome for one request, with the figures behind the RateLimit-* headers."""

    allowed: bool
    limit: int  # the bucket's capacity (the burst)
    remaining: int  # whole tokens left after this request
    reset_seconds: int  # until the bucket is full again
    retry_after: int  # until the next token (0 when allowed)

    def headers(self) -> dict[str, str]:
        """The IETF draft's RateLimit-* headers (a refusal's Retry-After comes with its error)."""
        return {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_seconds),
        }


@dataclass(frozen=True)
class Policy:
    """Capacity and refill rate of every bucket."""

    per_minute: int
    burst: int

    @property
    def per_second(self) -> float:
        """Tokens added per second."""
        return self.per_minute / 60.0

    def decide(self, *, allowed: bool, tokens: float) -> Decision:
        """The decision for a bucket left with `tokens` (fractional) tokens."""
        missing = max(0.0, self.burst - tokens)
        return Decision(
            allowed=allowed,
            limit=self.burst,
            remaining=max(0, math.floor(tokens)),
            reset_seconds=math.ceil(missing / self.per_second),
            retry_after=0 if allowed else max(1, math.ceil((1.0 - tokens) / self.per_second)),
        )


class RateLimiter(Protocol):
    """Takes one token from a bucket; None means the request is not limited (fail open)."""

    async def take(self, bucket: str) -> Decision | None:
        """Take a token from `bucket`."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


class FailureBudget(Protocol):
    """A per-address budget of failures: `check` before the attempt (no token taken), `take` for each
    failure. None means the budget cannot be read (fail open)."""

    async def check(self, bucket: str) -> Decision | None:
        """Whether `bucket` has a token left, without taking it."""
        ...

    async def take(self, bucket: str) -> Decision | None:
        """Take a token from `bucket` (one failure spent)."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


class MemoryRateLimiter:
    """Buckets in this process (one replica, or no Redis configured)."""

    def __init__(
        self,
        policy: Policy,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_buckets: int = _MEMORY_MAX_BUCKETS,
    ) -> None:
        self.policy = policy
        self.max_buckets = max_buckets
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # bucket -> (tokens, at)

    def __len__(self) -> int:
        """How many buckets are held."""
        return len(self._buckets)

    def peek(self, bucket: str) -> Decision:
        """Whether `bucket` has a token left, without taking it."""
        tokens = self._refilled(bucket, self._clock())
        return self.policy.decide(allowed=tokens >= 1.0, tokens=tokens)

    async def check(self, bucket: str) -> Decision:
        """peek, as FailureBudget has it."""
        return self.peek(bucket)

    async def take(self, bucket: str) -> Decision:
        """Refill, then take one token (no await in between: atomic on the event loop)."""
        now = self._clock()
        tokens = self._refilled(bucket, now)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        if bucket not in self._buckets and len(self._buckets) >= self.max_buckets:
            self._forget_full(now)
        self._buckets[bucket] = (tokens, now)
        return self.policy.decide(allowed=allowed, tokens=tokens)

    def _refilled(self, bucket: str, now: float) -> float:
        tokens, at = self._buckets.get(bucket, (float(self.policy.burst), now))
        return min(float(self.policy.burst), tokens + max(0.0, now - at) * self.policy.per_second)

    def _forget_full(self, now: float) -> None:
        # A bucket that has refilled completely is the same as no bucket: dropping it changes nothing.
        rate, burst = self.policy.per_second, self.policy.burst
        for name, (tokens, at) in list(self._buckets.items()):
            if tokens + (now - at) * rate >= burst:
                del self._buckets[name]
        # Still full (many clients at once, e.g. failures from many addresses): memory stays bounded by
        # dropping the oldest tenth, which forgets their spending; a tenth keeps the scan above rare.
        if len(self._buckets) >= self.max_buckets:
            for name in list(self._buckets)[: max(1, self.max_buckets // 10)]:
                del self._buckets[name]

    async def aclose(self) -> None:
        """Nothing to release."""


class RedisRateLimiter:
    """Buckets in Redis, shared by every replica that uses the same Redis and prefix."""

    def __init__(self, client: aioredis.Redis, policy: Policy, *, prefix: str = DEFAULT_REDIS_PREFIX) -> None:
        self.policy = policy
        self.prefix = prefix
        self._client = client
        self._script = client.register_script(_TAKE_SCRIPT)
        self._peek_script = client.register_script(_PEEK_SCRIPT)
        self._paused_until = 0.0
        self._failing = False

    @classmethod
    def from_url(
        cls,
        url: str,
        policy: Policy,
        *,
        prefix: str = DEFAULT_REDIS_PREFIX,
        timeout: float = _REDIS_TIMEOUT_SECONDS,
    ) -> RedisRateLimiter:
        """A limiter on its own connection pool; short timeouts (`timeout` seconds to connect and to
        answer) so a dead Redis never stalls requests."""
        client = aioredis.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            decode_responses=True,
        )
        return cls(client, policy, prefix=prefix)

    async def take(self, bucket: str) -> Decision | None:
        """Take a token in Redis; None (not limited) while Redis cannot be reached."""
        answer = await self._run(self._script, bucket)
        if answer is None:
            return None
        allowed, tokens = answer
        return self.policy.decide(allowed=int(allowed) == 1, tokens=float(tokens))

    async def check(self, bucket: str) -> Decision | None:
        """Whether `bucket` has a token left, without taking it (FailureBudget); None while Redis cannot
        be reached."""
        tokens = await self._run(self._peek_script, bucket)
        if tokens is None:
            return None
        return self.policy.decide(allowed=float(tokens) >= 1.0, tokens=float(tokens))

    async def _run(self, script: AsyncScript, bucket: str) -> Any:
        """One script on `bucket`; None (fail open, one warning per outage) while Redis cannot be reached."""
        if time.monotonic() < self._paused_until:
            return None
        rate_per_ms = self.policy.per_second / 1000.0
        try:
            answer = await script(keys=[self.prefix + bucket], args=[self.policy.burst, repr(rate_per_ms)])
        except (RedisError, OSError) as exc:
            self._paused_until = time.monotonic() + _REDIS_RETRY_PAUSE_SECONDS
            if not self._failing:
                self._failing = True
                logger.warning(
                    "ratelimit.redis.unavailable", extra={"error": type(exc).__name__, "keys": self.prefix}
                )
            return None
        if self._failing:
            self._failing = False
            logger.info("ratelimit.redis.recovered", extra={"keys": self.prefix})
        return answer

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()


def build_rate_limiter(
    *, redis_url: str | None, per_minute: int, burst: int, redis_timeout: float
) -> RateLimiter:
    """Redis-backed when a URL is configured, in-process otherwise."""
    policy = Policy(per_minute=per_minute, burst=burst)
    if redis_url:
        return RedisRateLimiter.from_url(redis_url, policy, timeout=redis_timeout)
    return MemoryRateLimiter(policy)


def build_failure_budget(
    *, redis_url: str | None, per_minute: int, burst: int, redis_timeout: float
) -> FailureBudget:
    """The per-address budget of failed authentications: in Redis when a URL is configured (one budget
    for every replica), in this process otherwise (one budget per process)."""
    policy = Policy(per_minute=per_minute, burst=burst)
    if redis_url:
        return RedisRateLimiter.from_url(
            redis_url, policy, prefix=FAILURES_REDIS_PREFIX, timeout=redis_timeout
        )
    return MemoryRateLimiter(policy)
