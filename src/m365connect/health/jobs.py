"""Health checks on the work engine: the `health.credential` and `health.mailboxes` job kinds and the
`health.plan` periodic task that enqueues them, spread over the configured intervals (API.md 6)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from m365connect.health.service import PLAN_EVERY_SECONDS, job_kinds, planning_task

if TYPE_CHECKING:
    from m365connect.state import AppState

PLAN_TASK = "health.plan"


def register_health_work(state: AppState) -> None:
    """Register the check job kinds and the planner (every PLAN_EVERY_SECONDS, once across processes)."""
    for kind in job_kinds(state):
        state.work.register(kind)
    state.work.every(PLAN_TASK, PLAN_EVERY_SECONDS, planning_task(state, state.work.enqueue))
