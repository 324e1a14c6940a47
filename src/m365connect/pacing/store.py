"""Where the pacer keeps its budgets: the service's database (pacing/repository.py) or Redis
(pacing/redis_store.py). The pacer (pacing/pacer.py) holds the waiting, the lines and the policy; a store
holds only atomic steps on the shared state, each one round trip, on the store's own clock.

The state of one budget key (`directory/{app}/{tenant}` or `outlook/{app}`):
- `tokens`, `at`: the directory bucket after its last take, and when (store clock, epoch seconds).
- `paused_until`: a 429's Retry-After; nothing is taken before it.
- `slow_until`: the bucket refills at `rate * slow` until then (Microsoft said the limit is near).
- `interactive_until`: an interactive caller waits; background callers take nothing before it.
- `slot_limit`: how many Outlook calls may be in flight now (adaptive, 1..`max_slots`); starts at the
  policy's `outlook_concurrency`.
- `hold_until`: no probing above `slot_limit` before it (set by an Outlook 429).
- slots `0 .. max_slots-1` of an Outlook key, each free or held by a holder until its lease expires.

Probing: a take of `n` slots may use the slots below `slot_limit + n` (not only below `slot_limit`)
when `hold_until` has passed; the lowest free slots are taken, so slots at or above the limit are only
used when the ones below are held. A take holding a slot at or above `slot_limit` is a probe. Whether
Microsoft's answer to it proves that more calls may be in flight is the pacer's judgement (pacing/pacer.py:
on when the requests were on the wire, which the store does not know); when it is proven, the release of
the call that completes the proof carries `raise_to` (twice the limit the probe saw, or its highest slot
+ 1 if more: slow start), and the store sets `slot_limit` to it, never above `max_slots`, never while a
hold runs. An Outlook 429 halves the concurrency actually in flight:
`slot_limit = max(1, min(slot_limit, held // 2))` where `held` counts the key's slots held now (the
throttled request's own included: the pacer pushes back before it releases), and holds probing for
`hold_for` seconds; once per event: a 429 of a request sent under a limit higher than the current one
(`sent_under` > `slot_limit`: a halving already answered it) changes nothing. A refused probe (or a 429
of a call beside one, which the pacer tells the same way) does not halve: Microsoft refused only the one
call above the limit while the calls beneath it ran, so the limit goes back to the one it probed above
(`sent_under`) and probing is held. Halving there cut an app to 2 or 3 for the hold's hour, by however
many slots happened to be held at that moment (13 of 50 apps in a 20,000-mailbox bench run), and every
envelope of 20 it sent was cut into 7 to 10.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class StoreUnavailable(Exception):
    """The store did not answer (the pacer then admits at once for a while, logged once)."""


@dataclass(frozen=True)
class BudgetState:
    """One budget's row, read with the store's clock `now`."""

    tokens: float
    at: float
    paused_until: float
    slow_until: float
    interactive_until: float
    now: float
    slot_limit: int = 0
    hold_until: float = 0.0


@dataclass(frozen=True)
class Taken:
    """Slots a take got (all `n` asked, or none), and the budget's `slot_limit` when it took them."""

    slots: tuple[int, ...]
    slot_limit: int

    @property
    def probe(self) -> bool:
        """A slot at or above the limit: Microsoft's answer to this request decides whether it grows."""
        return bool(self.slots) and max(self.slots) >= self.slot_limit


class PaceStore(Protocol):
    """The atomic steps of the pacer on one shared store (see the module's text for the semantics)."""

    async def seed(
        self, key: str, *, capacity: float, slots: int, slot_limit: int, interactive: bool = False
    ) -> None:
        """Create the budget (a full bucket of `capacity`, `slot_limit`) and its `slots` slots unless
        they exist (another process did it); existing state is left as it is. `interactive`, here and
        below: a caller is waiting for the answer (a store may serve it apart from background work)."""
        ...

    async def take_units(
        self, key: str, *, cap: float, rate: float, slow: float, cost: float, interactive: bool
    ) -> bool:
        """Refill the bucket (`rate` units a second, times `slow` while slowed, never above `cap`) and take
        `cost` units, if they are there and neither a pause nor (for background) an interactive stamp
        blocks. One atomic step."""
        ...

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
        """Hold `n` free slots for `holder` until now + `lease` (free: no holder, or lease expired), the
        lowest first, below `min(max_slots, slot_limit + n)` when probing is allowed (`hold_until` has
        passed) else below `min(max_slots, slot_limit)`; all `n` or none; none while paused or (for
        background) an interactive caller is stamped."""
        ...

    async def release(
        self,
        key: str,
        *,
        holder: str,
        raise_to: int | None,
        max_slots: int,
        interactive: bool = False,
    ) -> bool:
        """Free `holder`'s slots; with `raise_to` (the pacer found a probe proven), first set `slot_limit`
        to `min(max_slots, max(slot_limit, raise_to))` unless a hold runs. True when the limit was set so."""
        ...

    async def state(self, key: str, *, interactive_seconds: float | None) -> BudgetState | None:
        """The budget; with `interactive_seconds` (an interactive caller), first stamp
        `interactive_until = max(it, now + that)`."""
        ...

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
        """Microsoft pushed back. `pause` > 0: paused_until = max(it, now + pause), and with `empty` the
        bucket is emptied (tokens 0 at now). `slow_for` > 0: slow_until = max(it, now + slow_for).
        `halve`, unless `sent_under` > slot_limit: slot_limit = max(1, min(slot_limit, held // 2)) (with
        `probe`, a refused probe: slot_limit = max(1, min(slot_limit, sent_under)), the limit it probed
        above)
        and hold_until = max(it, now + hold_for)."""
        ...

    async def aclose(self) -> None:
        """Let go of connections."""
        ...
