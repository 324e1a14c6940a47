"""The state one simulator instance shares between its HTTP handlers (no module-level state)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from m365connect.simulator.budget_meters import BudgetMeter
from m365connect.simulator.budgets import Budgets
from m365connect.simulator.directory import Directory
from m365connect.simulator.faults import Faults, Stats
from m365connect.simulator.scenario import Scenario
from m365connect.simulator.tokens import TokenSigner


@dataclass
class SimulatorState:
    """Directory, token key, live faults and budgets, counters and the record of sent mail."""

    scenario: Scenario
    directory: Directory
    faults: Faults
    meter: BudgetMeter
    stats: Stats = field(default_factory=Stats)
    signer: TokenSigner = field(default_factory=TokenSigner)
    sent_mail: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_scenario(
        cls, scenario: Scenario, *, clock: Callable[[], float] = time.monotonic
    ) -> SimulatorState:
        """Build the state, with its own copies of the scenario's faults (and so its own RNG) and budgets;
        `clock` (seconds, monotonic) times the budgets, so that tests can move it instead of sleeping."""
        faults = Faults.model_validate(scenario.faults.model_dump())
        meter = BudgetMeter(Budgets.model_validate(scenario.budgets.model_dump()), clock)
        state = cls(scenario=scenario, directory=Directory(scenario), faults=faults, meter=meter)
        meter.on_throttle = state.stats.count_throttled
        return state

    async def injected_latency(self) -> None:
        """Sleep for the configured latency_ms, if any."""
        if self.faults.latency_ms > 0:
            await asyncio.sleep(self.faults.latency_ms / 1000)


class Latency:
    """The injected latency of one request, slept once wherever the request's path first reaches it (an
    Outlook call sleeps while it holds its concurrency slot, so that concurrent calls really overlap)."""

    def __init__(self, state: SimulatorState) -> None:
        self._state = state
        self._slept = False

    async def __call__(self) -> None:
        if not self._slept:
            self._slept = True
            await self._state.injected_latency()
