"""The pacer's budgets in Redis (PaceStore, pacing/store.py): every step is one Lua script, so one atomic
round trip, on Redis's own clock (`TIME`), and the processes' clocks never matter.

Keys, for a budget `key`:
- `{prefix}{key}`: a hash of `tokens`, `at`, `paused_until`, `slow_until`, `interactive_until`,
  `slot_limit`, `hold_until` (numbers as text: a Lua number returned to Redis is truncated to an
  integer, so every float crosses as a string both ways).
- `{prefix}{key}:slots`: a hash from slot number to `""` (free) or `"{expiry} {holder}"` (held until
  `expiry`, epoch seconds on Redis's clock; the holder is everything after the first space).

Both keys expire a day after their last write (every writing step refreshes both): an idle budget
disappears, and when it is seeded again it starts over with a full bucket and the policy's `slot_limit`,
so a learned Outlook limit is learned again. A budget that was never seeded (or has expired) takes
nothing, and `state` answers None. Both keys of a budget are named in each script; on a Redis Cluster
the prefix would need a hash tag (`{...}`) to keep them in one hash slot.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NoReturn

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from m365connect.pacing.store import BudgetState, StoreUnavailable, Taken
from m365connect.pacing.turns import Turns

DEFAULT_PREFIX = "m365connect:pace:"
_TIMEOUT_SECONDS = 0.5
_TTL_SECONDS = 86_400
_ERRORS = (RedisError, OSError, TimeoutError)

# Shared by every script: KEYS[1] = the budget's hash, KEYS[2] = its slots' hash.
_PRELUDE = f"""
local TTL = {_TTL_SECONDS}
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local function num(value) return tonumber(value) or 0 end
local function fmt(value) return string.format('%.17g', value) end
local function int(value) return string.format('%d', value) end
local function expiry(value)
  local space = string.find(value, ' ', 1, true)
  if not space then return nil, nil end
  return tonumber(string.sub(value, 1, space - 1)), string.sub(value, space + 1)
end
local function touch()
  redis.call('EXPIRE', KEYS[1], TTL)
  redis.call('EXPIRE', KEYS[2], TTL)
end
-- How many of these slot values are held now.
local function held(values)
  local count = 0
  for _, value in ipairs(values) do
    local until_ = expiry(value)
    if until_ and until_ > now then count = count + 1 end
  end
  return count
end
"""

# ARGV = capacity, slots, slot_limit. HSETNX: whatever exists stays as it is.
_SEED = """
local fields = {'tokens', fmt(tonumber(ARGV[1])), 'at', fmt(now), 'paused_until', '0', 'slow_until', '0',
  'interactive_until', '0', 'slot_limit', int(tonumber(ARGV[3])), 'hold_until', '0'}
for i = 1, #fields, 2 do redis.call('HSETNX', KEYS[1], fields[i], fields[i + 1]) end
for slot = 0, tonumber(ARGV[2]) - 1 do redis.call('HSETNX', KEYS[2], int(slot), '') end
touch()
return 1
"""

# ARGV = cap, rate, slow, cost, interactive (1/0). Returns 1 when `cost` was taken.
_TAKE_UNITS = """
local b = redis.call('HMGET', KEYS[1], 'tokens', 'at', 'paused_until', 'slow_until', 'interactive_until')
if not b[1] then return 0 end
if num(b[3]) > now or (ARGV[5] ~= '1' and num(b[5]) > now) then return 0 end
local rate = tonumber(ARGV[2])
if num(b[4]) > now then rate = rate * tonumber(ARGV[3]) end
local at = num(b[2])
local tokens = math.min(tonumber(ARGV[1]), num(b[1]) + math.max(0, now - at) * rate)
if tokens < tonumber(ARGV[4]) then return 0 end
redis.call('HSET', KEYS[1], 'tokens', fmt(tokens - tonumber(ARGV[4])), 'at', fmt(math.max(now, at)))
touch()
return 1
"""

# ARGV = holder, n, lease, max_slots, interactive (1/0). Returns {slot_limit, slot...} (no slot: none taken).
_TAKE_SLOTS = """
local b = redis.call('HMGET', KEYS[1], 'paused_until', 'interactive_until', 'slot_limit', 'hold_until')
if not b[3] then return {0} end
local limit, n = num(b[3]), tonumber(ARGV[2])
if n < 1 or num(b[1]) > now or (ARGV[5] ~= '1' and num(b[2]) > now) then return {limit} end
local bound = limit
if num(b[4]) <= now then bound = limit + n end
bound = math.min(tonumber(ARGV[4]), bound)
if bound < n then return {limit} end
local fields = {}
for slot = 0, bound - 1 do fields[#fields + 1] = int(slot) end
local values = redis.call('HMGET', KEYS[2], unpack(fields))
local chosen = {}
for i = 1, #fields do
  local value = values[i]
  local free = value and (value == '' or (expiry(value) or 0) <= now)
  if free and #chosen < n then chosen[#chosen + 1] = i - 1 end
end
if #chosen < n then return {limit} end
local value = fmt(now + tonumber(ARGV[3])) .. ' ' .. ARGV[1]
for _, slot in ipairs(chosen) do redis.call('HSET', KEYS[2], int(slot), value) end
touch()
return {limit, unpack(chosen)}
"""

# ARGV = holder, raise_to ('' for none), max_slots. Returns 1 when the limit was raised (not while a hold
# runs); the raise first, then the holder's slots are freed.
_RELEASE = """
local raised = 0
if ARGV[2] ~= '' then
  local b = redis.call('HMGET', KEYS[1], 'slot_limit', 'hold_until')
  if b[1] and num(b[2]) <= now then
    local limit = math.min(tonumber(ARGV[3]), math.max(num(b[1]), tonumber(ARGV[2])))
    redis.call('HSET', KEYS[1], 'slot_limit', int(limit))
    raised = 1
  end
end
local all = redis.call('HGETALL', KEYS[2])
for i = 1, #all, 2 do
  local _, holder = expiry(all[i + 1])
  if holder == ARGV[1] then redis.call('HSET', KEYS[2], all[i], '') end
end
touch()
return raised
"""

# ARGV = interactive_seconds ('' for none). Returns the seven fields and now, as strings, or nil.
_STATE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return nil end
if ARGV[1] ~= '' then
  local stamped = math.max(num(redis.call('HGET', KEYS[1], 'interactive_until')), now + tonumber(ARGV[1]))
  redis.call('HSET', KEYS[1], 'interactive_until', fmt(stamped))
  touch()
end
local b = redis.call('HMGET', KEYS[1], 'tokens', 'at', 'paused_until', 'slow_until', 'interactive_until',
  'slot_limit', 'hold_until')
local answer = {}
for i = 1, 7 do answer[i] = b[i] or '0' end
answer[8] = fmt(now)
return answer
"""

# ARGV = pause, empty (1/0), slow_for, halve (1/0), hold_for, sent_under, probe (1/0).
_PUSHBACK = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local b = redis.call('HMGET', KEYS[1], 'paused_until', 'slow_until', 'slot_limit', 'hold_until')
local pause, slow_for = tonumber(ARGV[1]), tonumber(ARGV[3])
if pause > 0 then
  redis.call('HSET', KEYS[1], 'paused_until', fmt(math.max(num(b[1]), now + pause)))
  if ARGV[2] == '1' then redis.call('HSET', KEYS[1], 'tokens', '0', 'at', fmt(now)) end
end
if slow_for > 0 then redis.call('HSET', KEYS[1], 'slow_until', fmt(math.max(num(b[2]), now + slow_for))) end
if ARGV[4] == '1' and num(b[3]) >= tonumber(ARGV[6]) then
  -- A refused probe: back to the limit it probed above; any other 429: half of what is held.
  local cap
  if ARGV[7] == '1' then
    cap = tonumber(ARGV[6])
  else
    cap = math.floor(held(redis.call('HVALS', KEYS[2])) / 2)
  end
  local limit = math.max(1, math.min(num(b[3]), cap))
  local hold = math.max(num(b[4]), now + tonumber(ARGV[5]))
  redis.call('HSET', KEYS[1], 'slot_limit', int(limit), 'hold_until', fmt(hold))
end
touch()
return 1
"""


def _number(value: float) -> str:
    return repr(float(value))


def _flag(value: bool) -> str:
    return "1" if value else "0"


class RedisPaceStore:
    """The pacer's budgets in Redis, shared by every process on the same Redis and prefix. Two lanes, each
    one connection on which steps run one at a time in the order they were asked for: background callers
    share one, interactive callers (a synchronous request is waiting) have their own, so an interactive
    caller never waits behind background ones. The order matters: a take asked for after a release finds
    the slots it freed, and slots go to the callers in the order they asked (a pool ran steps on
    whichever connection was free, and a release waiting for a new connection ran after later steps:
    docs/performance.md).
    A step that fails (Redis did not answer in time) fails the steps queued behind it at once, so that a
    Redis that hangs costs the waiting callers one timeout, not one each."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        prefix: str = DEFAULT_PREFIX,
        interactive_client: aioredis.Redis | None = None,
    ) -> None:
        self.prefix = prefix
        background = _Lane(client)
        # By `interactive`; without a client of its own, interactive steps share the background lane.
        self._lanes = {
            False: background,
            True: background if interactive_client is None else _Lane(interactive_client),
        }
        self._seed = client.register_script(_PRELUDE + _SEED)
        self._take_units = client.register_script(_PRELUDE + _TAKE_UNITS)
        self._take_slots = client.register_script(_PRELUDE + _TAKE_SLOTS)
        self._release = client.register_script(_PRELUDE + _RELEASE)
        self._state = client.register_script(_PRELUDE + _STATE)
        self._pushback = client.register_script(_PRELUDE + _PUSHBACK)

    @classmethod
    def from_url(
        cls, url: str, *, prefix: str = DEFAULT_PREFIX, timeout: float = _TIMEOUT_SECONDS
    ) -> RedisPaceStore:
        """A store on two connections of its own (the lanes). Short timeouts (`timeout` seconds to connect
        and to answer), and one immediate retry on a broken connection only (a socket Redis closed): a slow
        Redis fails fast, the pacer admits."""
        pool = aioredis.ConnectionPool.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
            decode_responses=True,
        )
        background, interactive = (
            aioredis.Redis(connection_pool=pool, single_connection_client=True) for _ in range(2)
        )
        return cls(background, prefix=prefix, interactive_client=interactive)

    async def seed(
        self,
        key: str,
        *,
        capacity: float,
        slots: int,
        slot_limit: int,
        interactive: bool = False,
    ) -> None:
        """Create the budget and its slots unless they exist (fields that exist are left as they are)."""
        await self._run(
            self._seed, key, _number(capacity), str(int(slots)), str(int(slot_limit)), interactive=interactive
        )

    async def take_units(
        self, key: str, *, cap: float, rate: float, slow: float, cost: float, interactive: bool
    ) -> bool:
        """Refill the bucket and take `cost` units, unless a pause or an interactive stamp blocks."""
        args = (_number(cap), _number(rate), _number(slow), _number(cost), _flag(interactive))
        return int(await self._run(self._take_units, key, *args, interactive=interactive)) == 1

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
        """Hold the `n` lowest free slots allowed (probing when no hold runs), all or none."""
        args = (holder, str(int(n)), _number(lease), str(int(max_slots)), _flag(interactive))
        limit, *slots = await self._run(self._take_slots, key, *args, interactive=interactive)
        return Taken(slots=tuple(int(slot) for slot in slots), slot_limit=int(limit))

    async def release(
        self,
        key: str,
        *,
        holder: str,
        raise_to: int | None,
        max_slots: int,
        interactive: bool = False,
    ) -> bool:
        """Free `holder`'s slots; with `raise_to`, first raise `slot_limit` unless a hold runs."""
        raise_arg = "" if raise_to is None else str(int(raise_to))
        args = (holder, raise_arg, str(int(max_slots)))
        answer = await self._run(self._release, key, *args, interactive=interactive, release=True)
        return int(answer) == 1

    async def state(self, key: str, *, interactive_seconds: float | None) -> BudgetState | None:
        """The budget (None when it does not exist), stamped first with `interactive_seconds`."""
        fresh = "" if interactive_seconds is None else _number(interactive_seconds)
        answer = await self._run(self._state, key, fresh, interactive=interactive_seconds is not None)
        if answer is None:
            return None
        tokens, at, paused, slow, interactive, limit, hold, now = (float(value) for value in answer)
        return BudgetState(tokens, at, paused, slow, interactive, now, int(limit), hold)

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
        """Pause (emptying the bucket), slow, and halve the Outlook concurrency with a hold (once per
        event: not for a request sent under a higher limit than the current one; a refused probe's
        limit goes back to the one it probed above instead)."""
        args = (
            _number(pause),
            _flag(empty),
            _number(slow_for),
            _flag(halve),
            _number(hold_for),
            str(int(sent_under)),
            _flag(probe),
        )
        await self._run(self._pushback, key, *args, interactive=interactive)

    async def aclose(self) -> None:
        """Close both lanes and their pool."""
        try:
            for client in {id(lane.client): lane.client for lane in self._lanes.values()}.values():
                await client.aclose()
            await self._lanes[False].client.connection_pool.aclose()
        except _ERRORS as exc:
            _unavailable(exc)

    async def _run(
        self, script: AsyncScript, key: str, *args: str, interactive: bool, release: bool = False
    ) -> Any:
        name = self.prefix + key
        lane = self._lanes[interactive]
        failures = lane.failures
        async with lane.lock.turn(first=release):
            if lane.failures != failures:
                raise StoreUnavailable("Redis did not answer a step queued before this one")
            try:
                return await script(keys=[name, name + ":slots"], args=list(args), client=lane.client)
            except _ERRORS as exc:
                lane.failures += 1
                _unavailable(exc)


@dataclass
class _Lane:
    """One connection (a single-connection client), the lock that runs its steps one at a time (releases
    first, then in the order asked: Turns), and how many of its steps failed (a step queued before a
    failure fails with it)."""

    client: aioredis.Redis
    lock: Turns = field(default_factory=Turns)
    failures: int = 0


def _unavailable(exc: BaseException) -> NoReturn:
    # The type only: a connection error's text names the host, and a URL may carry a password.
    raise StoreUnavailable(f"Redis did not answer ({type(exc).__name__})") from exc
