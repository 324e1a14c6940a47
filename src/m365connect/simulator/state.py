"""The state one simulator instance shares between its HTTP handlers (no module-level state)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from m365connect.simulator.directory import Directory
from m365connect.simulator.faults import Faults, Stats
from m365connect.simulator.scenario import Scenario
from m365connect.simulator.tokens import TokenSigner


@dataclass
class SimulatorState:
    """Directory, token key, live faults, counters and the record of sent mail."""

    scenario: Scenario
    directory: Directory
    faults: Faults
    stats: Stats = field(default_factory=Stats)
    signer: TokenSigner = field(default_factory=TokenSigner)
    sent_mail: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_scenario(cls, scenario: Scenario) -> SimulatorState:
        """Build the state, with its own copy of the scenario's faults (and so its own RNG)."""
        faults = Faults.model_validate(scenario.faults.model_dump())
        return cls(scenario=scenario, directory=Directory(scenario), faults=faults)

    async def injected_latency(self) -> None:
        """Sleep for the configured latency_ms, if any."""
        if self.faults.latency_ms > 0:
            await asyncio.sleep(self.faults.latency_ms / 1000)
