"""The Pacer of the service: Graph budgets in the database, shared by every process that uses it.

Two tables (models.py). A directory budget is a token bucket of resource units per app and tenant; one
UPDATE refills it on the database's clock and takes the units only if they are there (atomic on
PostgreSQL under READ COMMITTED, and on SQLite, whose writers are serialised). An Outlook budget is a set
of slot rows per app; one UPDATE takes n free slots (free: no holder, or its lease expired) only if n are
free, and one UPDATE frees them after the answer. Each statement runs on its own (autocommit): a paced
envelope costs at most one round trip for its units (shared with the envelopes waiting beside it), or two
for its slots, when there is room.

In this process, the callers of one Outlook budget wait in line (interactive before background) and only
the first asks the database, so waiting costs one statement per poll, not one per caller; the callers
waiting for one directory budget's units are taken together, one statement for all of them
(`_UnitsQueue`, interactive and background callers apart). Across processes,
an interactive caller that finds no room stamps `interactive_until` a little ahead; background callers
take nothing while the stamp is fresh. A 429 pauses the budget (`paused_until`) and a throttle-limit
percentage above the threshold slows the bucket's refill (`slow_until`), for every process.

When the database cannot be reached the pacer admits at once (logged once per outage, retried after a
pause): Graph's own 429s and the client's waves then pace the calls, as without a pacer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Literal, Protocol

from sqlalchemy.ext.asyncio import AsyncEngine

from m365connect.microsoft.pacing import Demand, Kind, PaceScope, Permit
from m365connect.pacing.repository import DatabaseStore
from m365connect.pacing.store import BudgetState, PaceStore, StoreUnavailable
from m365connect.pacing.turns import Turns

logger = logging.getLogger("m365connect.pacing")

_STORE_ERRORS = (StoreUnavailable,)
ProbeOutcome = Literal["raised", "unproven", "refused"]
_STORE_RETRY_PAUSE_SECONDS = 5.0
_SHORTEST_WAIT = 0.005
# A background caller whose own process holds the slots it needs waits for that process's release; it
# still asks the database when none came for this long (a count here is only ever too low, but a
# wrong one must not stall it).
_HELD_RECHECK_SECONDS = 1.0


@dataclass(frozen=True)
class PacingPolicy:
    """The numbers of the budgets (M365CONNECT_GRAPH_PACING_*, docs/configuration.md)."""

    directory_units: int = 3_500  # per window, per app and tenant: Microsoft's smallest tenant tier
    directory_window_seconds: float = 10.0
    safety: float = 0.8  # the share of a published budget that the service spends
    outlook_concurrency: int = 4  # the Outlook calls in flight a budget starts with (adaptive: store.py)
    outlook_max_concurrency: int = 32  # never more, however well the probes go
    outlook_hold_seconds: float = 3600.0  # no probing for this long after an Outlook 429
    outlook_scope: Literal["app", "mailbox"] = "app"
    lease_seconds: float = 60.0
    slow_threshold: float = 0.8
    slow_factor: float = 0.5
    slow_seconds: float = 10.0
    interactive_seconds: float = 0.5
    poll_seconds: float = 0.05

    @property
    def capacity(self) -> float:
        """The directory bucket's size in resource units."""
        return self.directory_units * self.safety

    @property
    def rate(self) -> float:
        """Resource units added to the bucket per second."""
        return self.capacity / self.directory_window_seconds


class PaceObserver(Protocol):
    """Receives what the pacer did (the service's metrics; observability/metrics.py)."""

    def waited(self, kind: Kind, interactive: bool, seconds: float) -> None:
        """A request waited `seconds` for room in a budget of `kind` (0 when admitted at once)."""

    def pushed_back(self, kind: Kind, *, throttled: int, paused: bool, slowed: bool) -> None:
        """Microsoft answered `throttled` items 429; the budget was paused and/or slowed."""

    def probed(self, outcome: ProbeOutcome) -> None:
        """A probe above the Outlook limit was answered: without pushback and the limit was raised, without
        pushback but the calls beneath it had ended before it was answered (`unproven`: no raise), or with
        pushback (`refused`)."""


class NoPaceObserver:
    """Observes nothing."""

    def waited(self, kind: Kind, interactive: bool, seconds: float) -> None:
        """Nothing."""

    def pushed_back(self, kind: Kind, *, throttled: int, paused: bool, slowed: bool) -> None:
        """Nothing."""

    def probed(self, outcome: ProbeOutcome) -> None:
        """Nothing."""


def budget_key(kind: Kind, scope: PaceScope) -> str:
    """The row of a budget: per app and tenant for the directory, per app for Outlook."""
    return f"directory/{scope.app_id}/{scope.tenant_id}" if kind == "directory" else f"outlook/{scope.app_id}"


class _Line:
    """The callers of one budget in this process: one at a time, interactive ones first (Turns)."""

    def __init__(self) -> None:
        self.turns = Turns()
        self.freed = asyncio.Event()  # set when this process frees slots of the budget


@dataclass(eq=False)
class _UnitsWaiter:
    """A caller waiting for directory units: its cost, its deadline, and the answer it awaits."""

    cost: float
    deadline: float
    answer: asyncio.Future[bool]


class _UnitsQueue:
    """The callers of one directory budget in this process, of one kind (interactive or background).

    One task (the taker) asks the store for the units of every caller waiting, in ONE statement, and
    answers them all, then does the same for those who came meanwhile. Callers one at a time cost a
    statement each, on one connection shared by every budget of the process: with 100 chunks starting at
    once, 1,000 lookup envelopes queued there for 7-10 s (docs/performance.md).
    """

    def __init__(self) -> None:
        self.waiting: deque[_UnitsWaiter] = deque()
        self.taker: asyncio.Task[None] | None = None


class StorePacer:
    """Graph budgets in a shared store (pacing/store.py): the database, or Redis where configured."""

    def __init__(
        self,
        store: PaceStore,
        policy: PacingPolicy,
        *,
        observer: PaceObserver | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy = policy
        self.store = store
        self._observer: PaceObserver = observer or NoPaceObserver()
        self._clock = clock
        self._lines: dict[str, _Line] = {}
        self._units: dict[tuple[str, bool], _UnitsQueue] = {}  # by directory budget and `interactive`
        self._seeded: set[str] = set()
        # This process's Outlook permits in flight, per budget and holder (the slots it holds: _holding),
        # and the ended ones that may still tell about those (_forget): a probe is judged on them
        # (_witnessed, probe_beside).
        self._flying: dict[str, dict[str, Permit]] = {}
        self._ended: dict[str, list[Permit]] = {}
        # Per Outlook budget, its limit and whether it may be probed, as last seen (a take that got slots
        # does not say whether a hold runs: assumed not, which can only make this process ask more).
        self._known: dict[str, tuple[int, bool]] = {}
        self._paused_until = 0.0  # the store failed: admit without it until then
        self._failing = False

    async def acquire(self, scope: PaceScope, demand: Demand, *, deadline: float) -> Permit | None:
        """Room for `demand` in the scope's budgets, waiting for it until `deadline` (time.monotonic)."""
        if self._clock() < self._paused_until:
            return Permit(scope, demand)
        slots = demand.outlook if self.policy.outlook_scope == "app" else 0
        try:
            if demand.units and not await self._wait_for_units(scope, demand.units, deadline):
                return None
            if not slots:
                return Permit(scope, demand)
            permit = await self._wait_for_slots(scope, demand, slots, deadline)
        except _STORE_ERRORS as exc:
            self._store_failed(exc)
            return Permit(scope, demand)
        self._store_recovered()
        return permit

    async def release(self, permit: Permit, *, proven: bool = False) -> None:
        """Free the permit's Outlook slots (a lease left behind expires after `lease_seconds`). `proven`:
        Microsoft answered the request without pushback, so a probe it witnessed (or that it was) may
        raise the budget's limit."""
        if permit.lease is None:
            return
        key = budget_key("outlook", permit.scope)
        permit.flight.clean = proven
        # A proven probe doubles the limit (slow start: 4, 8, 16, 32 in three probes), or raises it to
        # what the probe held if that was more; with this release, as that is when it is proven (_proof).
        probe = self._proof(key, permit)
        raise_to = None if probe is None else max(probe.top + 1, 2 * probe.limit)
        raised = False
        try:
            raised = await self.store.release(
                key,
                holder=permit.lease,
                raise_to=raise_to,
                max_slots=self.policy.outlook_max_concurrency,
                interactive=permit.scope.interactive,
            )
        except _STORE_ERRORS as exc:
            self._store_failed(exc)
        finally:
            if probe is not None:
                self._judge(probe, "raised" if raised else "unproven", raise_to)
            elif permit.probe and not proven:
                self._judge(permit, "refused", None)
            self._forget(key, permit)
            if raise_to is not None:
                self._known.pop(key, None)  # the limit grew: read it again before trusting the count
            line = self._lines.get(key)
            if line is not None:
                line.freed.set()

    def probe_beside(self, permit: Permit) -> bool:
        """A probe of this process was at Microsoft while `permit`'s request was. Microsoft admits by
        arrival, and which call arrives last is not the order the slots were taken in, nor the order the
        requests were written in: with a probe there, a call within the limit may be refused in its
        place. That 429 tells that the probe was above the limit, not that the limit is too high (halving
        on it left apps at 2 for the rest of a bench run)."""
        if not permit.lease:
            return False
        key = budget_key("outlook", permit.scope)
        return any(
            other.probe and other.flight.overlaps(permit.flight)
            for other in self._around(key)
            if other is not permit
        )

    def _proof(self, key: str, released: Permit) -> Permit | None:
        """The probe that `released` proves, if any: itself, or a probe answered without pushback that it
        witnessed. A probe carried one call more than its slots under the limit (pacing.carried), so it
        proves that Microsoft allows more only if the calls beneath the rest of the limit were there when
        it got there: this process's calls sent before it and still out well into its flight, themselves
        answered without pushback (_witnessed). Those answers may come after the probe's, so a probe is
        proven with the release of the witness that completes its count."""
        if released.probe:
            candidates = [released]
        else:
            candidates = [
                ended for ended in self._ended.get(key, ()) if released.flight.outlasted(ended.flight)
            ]
        for probe in candidates:
            pending = probe.probe and probe.flight.clean and not probe.flight.judged
            if pending and self._witnessed(key, probe) >= max(1, probe.limit - probe.beneath):
                return probe
        return None

    def _witnessed(self, key: str, probe: Permit) -> int:
        """The Outlook calls that witness the probe: this process's, sent before it, still out at the
        middle of its flight (pacing.Flight.outlasted) and answered without pushback. Slots held prove
        nothing: a request waits for a connection with its slots held (a bench run with 64 connections
        raised 10 of 50 apps from 4 to 8 on such witnesses), an answer waits for the event loop, and an
        envelope that Microsoft refused in part ran fewer calls than its slots (another raised an app that
        way). The middle, not the end: calls of the same length sent together are answered in the order
        sent, and Microsoft ran them together (the simulator with its budgets off). Calls of other
        processes are not seen here, so a probe among them is not proven."""
        return sum(
            other.calls
            for other in self._around(key)
            if other is not probe and other.flight.clean and other.flight.outlasted(probe.flight)
        )

    def _judge(self, probe: Permit, outcome: ProbeOutcome, raise_to: int | None) -> None:
        """Count a probe's outcome once; a raised limit or a refusal (rare) is also logged."""
        if probe.flight.judged:
            return
        probe.flight.judged = True
        self._observer.probed(outcome)
        if outcome != "unproven":
            fields: dict[str, object] = {"app_id": probe.scope.app_id, "limit": probe.limit}
            if raise_to is not None:
                fields["raised_to"] = min(raise_to, self.policy.outlook_max_concurrency)
            logger.info(f"pacing.outlook.{outcome}", extra=fields)

    def _holding(self, key: str) -> int:
        """The budget's Outlook slots this process holds."""
        return sum(len(permit.slots) for permit in self._flying.get(key, {}).values())

    def _around(self, key: str) -> list[Permit]:
        """The budget's permits in flight here, and the ended ones kept (_forget)."""
        return [*self._flying.get(key, {}).values(), *self._ended.get(key, ())]

    def _forget(self, key: str, permit: Permit) -> None:
        """The permit's request is over: drop it, and the ended permits that can no longer tell about one
        in flight. An ended call is kept while a probe sent during it is in flight (it may witness it); an
        ended probe while a call that was at Microsoft with it is (a witness still to come back, or a call
        Microsoft may have refused in its place). Probes are rare: the kept list is nearly always empty."""
        flying = self._flying.get(key)
        if flying is None:
            return
        flying.pop(permit.lease or "", None)
        kept: list[Permit] = []
        for ended in (*self._ended.pop(key, ()), permit):
            if any(_tells(ended, other) for other in flying.values()):
                kept.append(ended)
            elif ended.probe and ended.flight.clean:
                self._judge(ended, "unproven", None)  # its witnesses are all in: never proven
        if kept:
            self._ended[key] = kept
        if not flying:
            del self._flying[key]

    async def pushback(
        self,
        scope: PaceScope,
        kind: Kind,
        *,
        retry_after: float | None,
        pressure: float | None,
        throttled: int = 0,
        sent_under: int = 0,
        probe: bool = False,
    ) -> None:
        """Pause the budget for every process until Retry-After; slow its refill under pressure; an Outlook
        429 halves the calls let in flight and holds probing (call it before releasing the permit), once
        per event: not when the throttled request was sent under a higher limit (`sent_under`) than now.
        A refused `probe` holds probing and leaves the limit it probed above (`sent_under`): Microsoft
        refused only the call above it, the calls beneath ran."""
        slowed = pressure is not None and pressure > self.policy.slow_threshold and kind == "directory"
        pause = retry_after if retry_after and retry_after > 0 else 0.0
        halve = kind == "outlook" and throttled > 0 and self.policy.outlook_scope == "app"
        self._observer.pushed_back(kind, throttled=throttled, paused=pause > 0, slowed=slowed)
        if not pause and not slowed and not halve:
            return
        key = budget_key(kind, scope)
        try:
            await self._seed(kind, scope)
            await self.store.pushback(
                key,
                pause=pause,
                empty=kind == "directory",
                slow_for=self.policy.slow_seconds if slowed else 0.0,
                halve=halve,
                hold_for=self.policy.outlook_hold_seconds,
                sent_under=sent_under,
                probe=probe,
                interactive=scope.interactive,
            )
        except _STORE_ERRORS as exc:
            self._store_failed(exc)
        if halve:
            self._known.pop(key, None)

    def _line(self, key: str) -> _Line:
        line = self._lines.get(key)
        if line is None:
            line = self._lines[key] = _Line()
        return line

    async def _seed(self, kind: Kind, scope: PaceScope) -> None:
        """Create the budget once per process (a conflict means another process did)."""
        key = budget_key(kind, scope)
        if key in self._seeded:
            return
        slots = self.policy.outlook_max_concurrency if kind == "outlook" else 0
        await self.store.seed(
            key,
            capacity=self.policy.capacity,
            slots=slots,
            slot_limit=self.policy.outlook_concurrency,
            interactive=scope.interactive,
        )
        self._seeded.add(key)

    async def _wait_for_units(self, scope: PaceScope, units: int, deadline: float) -> bool:
        """Wait in the budget's queue (_UnitsQueue) until its taker has taken this caller's units; False
        when the budget will not have them before `deadline`."""
        key = budget_key("directory", scope)
        started = self._clock()
        queue = self._units.get((key, scope.interactive))
        if queue is None:
            queue = self._units[(key, scope.interactive)] = _UnitsQueue()
        waiter = _UnitsWaiter(
            cost=min(float(units), self.policy.capacity),
            deadline=deadline,
            answer=asyncio.get_running_loop().create_future(),
        )
        queue.waiting.append(waiter)
        if queue.taker is None:
            queue.taker = asyncio.create_task(self._take_units(key, scope, queue))
        try:
            async with asyncio.timeout(max(0.0, deadline - self._clock())):
                taken = await waiter.answer
        except TimeoutError:
            return False  # the answer was cancelled with this caller: the taker skips it
        if taken:
            self._observer.waited("directory", scope.interactive, self._clock() - started)
        return taken

    async def _take_units(self, key: str, scope: PaceScope, queue: _UnitsQueue) -> None:
        """The taker of a _UnitsQueue: until nobody waits, take the units of the callers waiting (as
        many, in order, as the bucket holds at most) in one statement, and answer them; when the bucket
        lacks them, wait as long as the first one's units take to come back, and tell every caller whose
        deadline comes sooner that it will not have them. A failing store fails every caller waiting."""
        try:
            while True:
                while queue.waiting and queue.waiting[0].answer.done():
                    queue.waiting.popleft()  # gone: its deadline passed, or it was cancelled
                if not queue.waiting:
                    return
                batch: list[_UnitsWaiter] = []
                total = 0.0
                for waiter in queue.waiting:
                    if waiter.answer.done():
                        continue
                    if batch and total + waiter.cost > self.policy.capacity:
                        break
                    batch.append(waiter)
                    total += waiter.cost
                await self._seed("directory", scope)
                taken = await self._take(key, total, scope.interactive)
                if not taken and len(batch) > 1:  # not enough for all: the first alone, as before
                    batch, total = batch[:1], batch[0].cost
                    taken = await self._take(key, total, scope.interactive)
                if taken:
                    for waiter in batch:
                        queue.waiting.remove(waiter)
                        if not waiter.answer.done():  # a caller gone meanwhile: its units are lost
                            waiter.answer.set_result(True)
                    continue
                state = await self._state(key, scope.interactive)
                if state is None:  # gone (a Redis restart, an idle budget's expiry): create it again
                    self._seeded.discard(key)
                wait = self._units_wait(state, batch[0].cost, scope.interactive)
                until = self._clock() + wait
                for waiter in queue.waiting:
                    if waiter.deadline < until and not waiter.answer.done():
                        waiter.answer.set_result(False)
                await asyncio.sleep(wait)
        except BaseException as exc:
            for waiter in queue.waiting:
                if not waiter.answer.done():
                    if isinstance(exc, Exception):
                        waiter.answer.set_exception(exc)
                    else:
                        waiter.answer.cancel()
            queue.waiting.clear()
            if not isinstance(exc, Exception):
                raise
        finally:
            queue.taker = None

    async def _take(self, key: str, cost: float, interactive: bool) -> bool:
        return await self.store.take_units(
            key,
            cap=self.policy.capacity,
            rate=self.policy.rate,
            slow=self.policy.slow_factor,
            cost=cost,
            interactive=interactive,
        )

    def _units_wait(self, state: BudgetState | None, cost: float, interactive: bool) -> float:
        if state is None:
            return self.policy.poll_seconds
        if state.paused_until > state.now:
            return max(_SHORTEST_WAIT, state.paused_until - state.now)
        if not interactive and state.interactive_until > state.now:
            return self.policy.poll_seconds
        rate = self.policy.rate * (self.policy.slow_factor if state.slow_until > state.now else 1.0)
        refilled = min(self.policy.capacity, state.tokens + max(0.0, state.now - state.at) * rate)
        return max(_SHORTEST_WAIT, (cost - refilled) / rate)

    def _room(self, key: str, wanted: int) -> int | None:
        """The slots a take of `wanted` may use, by the budget as last seen (store.py: probing)."""
        known = self._known.get(key)
        if known is None:
            return None
        limit, probing = known
        return min(self.policy.outlook_max_concurrency, limit + (wanted if probing else 0))

    async def _wait_for_slots(
        self, scope: PaceScope, demand: Demand, slots: int, deadline: float
    ) -> Permit | None:
        key = budget_key("outlook", scope)
        holder = uuid.uuid4().hex
        wanted = min(slots, self.policy.outlook_max_concurrency)
        started = self._clock()
        async with self._turn(key, scope.interactive, deadline) as turned:
            if not turned:
                return None
            line = self._line(key)
            while True:
                line.freed.clear()
                room = self._room(key, wanted)
                # Never more than the budget lets in flight: under a limit of 2 (after a 429) an envelope
                # that wants 4 takes 2 and carries 2 Outlook items (graph.py); asking for 4 never ends.
                want = wanted if room is None else max(1, min(wanted, room))
                if not scope.interactive and room is not None and self._holding(key) + want > room:
                    # This process holds the slots that would be needed: only its own release frees them
                    # (a lease running out is the rare other way), so asking the store now is wasted.
                    left = deadline - self._clock()
                    if left <= 0:
                        return None
                    try:
                        await asyncio.wait_for(line.freed.wait(), timeout=min(_HELD_RECHECK_SECONDS, left))
                        continue
                    except TimeoutError:
                        line.freed.clear()  # no release here for a while: ask the store after all
                        self._known.pop(key, None)
                await self._seed("outlook", scope)
                taken = await self.store.take_slots(
                    key,
                    holder=holder,
                    n=want,
                    lease=self.policy.lease_seconds,
                    max_slots=self.policy.outlook_max_concurrency,
                    interactive=scope.interactive,
                )
                if taken.slots:
                    # A take does not say whether a hold runs: keep what was read for this limit (else a
                    # held budget would look open to probes, and callers would ask instead of waiting).
                    known = self._known.get(key)
                    probing = known[1] if known is not None and known[0] == taken.slot_limit else True
                    self._known[key] = (taken.slot_limit, probing)
                    self._observer.waited("outlook", scope.interactive, self._clock() - started)
                    permit = Permit(
                        scope,
                        demand,
                        lease=holder,
                        slots=taken.slots,
                        probe=taken.probe,
                        top=max(taken.slots),
                        limit=taken.slot_limit,
                    )
                    self._flying.setdefault(key, {})[holder] = permit
                    return permit
                state = await self._state(key, scope.interactive)
                if state is None:  # gone (a Redis restart, an idle budget's expiry): create it again
                    self._seeded.discard(key)
                else:
                    self._known[key] = (state.slot_limit, state.hold_until <= state.now)
                wait = self.policy.poll_seconds
                if state is not None and state.paused_until > state.now:
                    wait = max(wait, state.paused_until - state.now)
                left = deadline - self._clock()
                if left <= 0 or (wait > left and state is not None and state.paused_until > state.now):
                    return None
                with contextlib.suppress(TimeoutError):  # a slot freed here ends the wait early
                    await asyncio.wait_for(line.freed.wait(), timeout=min(wait, left))

    async def _state(self, key: str, interactive: bool) -> BudgetState | None:
        """The budget; an interactive caller also stamps that it is waiting."""
        fresh = self.policy.interactive_seconds if interactive else None
        return await self.store.state(key, interactive_seconds=fresh)

    @asynccontextmanager
    async def _turn(self, key: str, interactive: bool, deadline: float) -> AsyncIterator[bool]:
        """This caller's turn in the line of the budget; False when it does not come before `deadline`."""
        line = self._line(key)
        try:
            async with asyncio.timeout(max(0.0, deadline - self._clock())):
                entered = line.turns.turn(first=interactive)
                await entered.__aenter__()
        except TimeoutError:
            yield False
            return
        try:
            yield True
        finally:
            await entered.__aexit__(None, None, None)

    async def aclose(self) -> None:
        """Let go of the store's connections (before the engine is disposed)."""
        with contextlib.suppress(*_STORE_ERRORS):
            await self.store.aclose()

    def _store_failed(self, exc: BaseException) -> None:
        self._paused_until = self._clock() + _STORE_RETRY_PAUSE_SECONDS
        if not self._failing:
            self._failing = True
            logger.warning("pacing.store.unavailable", extra={"error": str(exc) or type(exc).__name__})

    def _store_recovered(self) -> None:
        if self._failing:
            self._failing = False
            logger.info("pacing.store.recovered")


class DatabasePacer(StorePacer):
    """Graph budgets in the service's database (PostgreSQL, or one SQLite file for every process)."""

    def __init__(
        self,
        engine: AsyncEngine,
        policy: PacingPolicy,
        *,
        observer: PaceObserver | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(DatabaseStore(engine), policy, observer=observer, clock=clock)


def _tells(ended: Permit, flying: Permit) -> bool:
    """Whether an ended permit may still tell about one in flight: a call that may witness a probe sent
    during it, or a probe that was at Microsoft while that call was (pacer.probe_beside)."""
    if ended.probe:
        return ended.flight.overlaps(flying.flight)
    sent, answered = ended.flight.sent, ended.flight.answered
    return (
        flying.probe
        and flying.flight.sent is not None
        and sent is not None
        and answered is not None
        and sent < flying.flight.sent < answered
    )
