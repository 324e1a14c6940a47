"""The health checks for one account's request (on demand) and for the work engine (background jobs)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from m365connect.credentials import service as credentials
from m365connect.credentials.models import GraphCredential
from m365connect.db.base import utcnow
from m365connect.health import repository
from m365connect.health.credential_checks import check_credential
from m365connect.health.mailbox_checks import check_mailboxes
from m365connect.health.planner import CREDENTIAL_JOB, MAILBOXES_JOB, plan_checks
from m365connect.mailboxes import service as mailboxes
from m365connect.mailboxes.models import ACTIVE, Mailbox
from m365connect.work.ports import Enqueue, JobHandler, JobKind, JobRun, Payload, PeriodicHandler

if TYPE_CHECKING:
    from m365connect.state import AppState

# How often the planner runs (a periodic task, once per period across all processes).
PLAN_EVERY_SECONDS = 5.0
# Retries of a check that met a transient failure (seconds before attempt 2, 3, ...); the next planned
# check comes anyway, so a check that never gets an answer is dropped after these.
RETRY_DELAYS = (30.0, 120.0, 600.0)


async def verify_credential(state: AppState, *, account_id: int, credential_id: int) -> GraphCredential:
    """Check one of the account's credentials now (404 for another account's); it as stored after."""
    async with state.transactions.begin() as session:
        await credentials.get_credential(session, account_id=account_id, credential_id=credential_id)
    await check_credential(state, credential_id)
    async with state.transactions.begin() as session:
        return await credentials.get_credential(session, account_id=account_id, credential_id=credential_id)


async def verify_mailbox(state: AppState, *, account_id: int, mailbox_id: int) -> Mailbox:
    """Check one of the account's mailboxes now (404 for another account's); it as stored after. A
    DISCONNECTED mailbox is not checked and comes back as it is."""
    async with state.transactions.begin() as session:
        mailbox = await mailboxes.get_mailbox(session, account_id=account_id, mailbox_id=mailbox_id)
    if mailbox.status == ACTIVE and mailbox.credential_id is not None:
        await check_mailboxes(state, mailbox.credential_id, [mailbox.id], interactive=True)
    async with state.transactions.begin() as session:
        return await mailboxes.get_mailbox(session, account_id=account_id, mailbox_id=mailbox_id)


async def state_counts(state: AppState) -> list[repository.StateCount]:
    """Mailboxes by health and credentials by status, across accounts (read on each /metrics scrape)."""
    async with state.sessions() as session:
        return await repository.state_counts(session, now=utcnow())


def job_kinds(state: AppState) -> list[JobKind]:
    """The two kinds of health job the planner enqueues, for the work engine to register."""

    async def credential_job(_run: JobRun, payload: Payload) -> None:
        await check_credential(state, int(payload["credential_id"]))

    async def mailboxes_job(_run: JobRun, payload: Payload) -> None:
        ids = [int(mailbox_id) for mailbox_id in payload["mailbox_ids"]]
        await check_mailboxes(state, int(payload["credential_id"]), ids)

    handlers: dict[str, JobHandler] = {CREDENTIAL_JOB: credential_job, MAILBOXES_JOB: mailboxes_job}
    return [
        JobKind(name=name, handler=handler, retry_delays=RETRY_DELAYS) for name, handler in handlers.items()
    ]


def planning_task(state: AppState, enqueue: Enqueue) -> PeriodicHandler:
    """The periodic task that plans due checks (every PLAN_EVERY_SECONDS): one transaction per run, so the
    jobs and the moved due times are saved together."""

    async def plan() -> None:
        async with state.transactions.begin() as session:
            await plan_checks(session, enqueue, now=utcnow(), settings=state.settings)

    return plan
