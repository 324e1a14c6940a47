"""Bulk jobs on the work engine: the `bulk_job.chunk` job kind and the `bulk_jobs.sweep` periodic task."""

from __future__ import annotations

from typing import TYPE_CHECKING

from m365connect.jobs.run import chunk_job_kind
from m365connect.jobs.sweep import SWEEP_TASK, sweep_stuck_jobs

if TYPE_CHECKING:
    from m365connect.state import AppState


def register_job_work(state: AppState) -> None:
    """Register the chunk kind, capped at M365CONNECT_BULK_JOB_SLOTS chunks at once across all processes,
    and the sweep of stuck jobs (every M365CONNECT_BULK_JOB_SWEEP_SECONDS)."""
    state.work.register(chunk_job_kind(state.transactions, state.jobs, slots=state.settings.bulk_job_slots))

    async def sweep() -> None:
        await sweep_stuck_jobs(state.transactions, state.jobs)

    state.work.every(SWEEP_TASK, state.settings.bulk_job_sweep_seconds, sweep)
