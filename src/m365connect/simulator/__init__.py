"""Bundled simulation of Microsoft's identity platform, Microsoft Graph and DNS (demos, benchmarks, tests)."""

from m365connect.simulator.budgets import Budgets
from m365connect.simulator.faults import Faults, Stats
from m365connect.simulator.scenario import Scenario, ScenarioError, load_scenario
from m365connect.simulator.server import FakeMicrosoft, serve_forever

__all__ = [
    "Budgets",
    "FakeMicrosoft",
    "Faults",
    "Scenario",
    "ScenarioError",
    "Stats",
    "load_scenario",
    "serve_forever",
]
