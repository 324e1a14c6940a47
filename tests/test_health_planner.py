"""Planning background checks (API.md 6): due times spread evenly over the interval, each mailbox and
credential enqueued once per interval, batches per credential, bounded work per call (no herd after a
restart). A fake enqueue records the calls; the database is real (both backends)."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any, cast

import pytest
from sqlalchemy import Table, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from m365connect.accounts.models import Account
from m365connect.credentials.models import GraphCredential
from m365connect.health.planner import (
    CREDENTIAL_JOB,
    MAILBOXES_JOB,
    MAILBOXES_PER_JOB,
    PLAN_LIMIT,
    plan_checks,
)
from m365connect.health.service import planning_task
from m365connect.mailboxes.models import Mailbox
from m365connect.settings import Settings
from m365connect.state import AppState
from m365connect.work.ports import Payload

T0 = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
MAILBOX_INTERVAL, CREDENTIAL_INTERVAL = 3600, 600
CREDENTIALS, PER_CREDENTIAL = 3, 400
STEP = timedelta(seconds=30)  # the periodic task's period, here


@dataclass
class FakeEnqueue:
    """Records every job it is given, with the time the planner ran."""

    now: datetime = T0
    jobs: list[tuple[datetime, str, dict[str, Any], str | None]] = field(default_factory=list)

    async def __call__(
        self,
        session: AsyncSession,
        kind: str,
        payload: Payload,
        *,
        delay: float = 0.0,
        dedupe_key: str | None = None,
    ) -> None:
        assert session.in_transaction()
        assert delay == 0.0
        self.jobs.append((self.now, kind, dict(payload), dedupe_key))


@pytest.fixture
def planning(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "health_mailbox_interval": MAILBOX_INTERVAL,
            "health_credential_interval": CREDENTIAL_INTERVAL,
        }
    )


@pytest.fixture
async def seeded(state: AppState) -> dict[int, int]:
    """Three credentials of one account with 400 ACTIVE mailboxes each (and a disconnected one); {mailbox
    id: credential id} of the ACTIVE ones."""
    async with state.transactions.begin() as session:
        account = Account(name="acme")
        session.add(account)
        await session.flush()
        credentials = [
            GraphCredential(
                account_id=account.id,
                name=f"c{n}",
                tenant_id=f"tenant{n}.example",
                tenant_key=f"tenant{n}.example",
                client_id=f"{n:08d}-0000-4000-8000-000000000000",
                secret_ciphertext=b"sealed",
                secret_expires_at=datetime(2030, 1, 1, tzinfo=UTC),
            )
            for n in range(CREDENTIALS)
        ]
        session.add_all(credentials)
        await session.flush()
        rows = [
            {
                "account_id": account.id,
                "credential_id": credential.id,
                "email": f"user{n}@{credential.tenant_id}",
                "name": None,
                "microsoft_user_id": f"user-{credential.id}-{n}",
                "status": "ACTIVE" if n < PER_CREDENTIAL else "DISCONNECTED",
                "spf_correct": True,
                "dkim_correct": True,
                "connected_at": T0,
            }
            for credential in credentials
            for n in range(PER_CREDENTIAL + 1)
        ]
        await session.execute(insert(cast(Table, Mailbox.__table__)), rows)
    async with state.sessions() as session:
        found = await session.execute(
            select(Mailbox.id, Mailbox.credential_id).where(Mailbox.status == "ACTIVE")
        )
        return {mailbox_id: int(credential_id) for mailbox_id, credential_id in found}


async def plan(state: AppState, enqueue: FakeEnqueue, settings: Settings, now: datetime, **kw: Any) -> int:
    enqueue.now = now
    async with state.transactions.begin() as session:
        return await plan_checks(session, enqueue, now=now, settings=settings, **kw)


async def due_times(state: AppState) -> dict[int, datetime]:
    async with state.sessions() as session:
        rows = await session.execute(
            select(Mailbox.id, Mailbox.next_check_at).where(Mailbox.status == "ACTIVE")
        )
        return {row[0]: row[1] for row in rows}


def assert_spread(times: list[datetime], start: datetime, interval: int, bins: int = 10) -> None:
    """Every time falls in (start, start + interval], and each tenth of it holds about a tenth of them."""
    assert all(start < t <= start + timedelta(seconds=interval) for t in times)
    counts = Counter(int((t - start).total_seconds() * bins / interval) for t in times)
    expected = len(times) / bins
    assert all(0.6 * expected <= counts[b] <= 1.4 * expected for b in range(bins)), counts


def mailbox_jobs(enqueue: FakeEnqueue) -> list[tuple[datetime, dict[str, Any], str | None]]:
    return [(when, payload, key) for when, kind, payload, key in enqueue.jobs if kind == MAILBOXES_JOB]


async def test_new_mailboxes_get_first_checks_spread_over_the_interval_in_bounded_calls(
    state: AppState, planning: Settings, seeded: dict[int, int]
) -> None:
    enqueue = FakeEnqueue()
    assert await plan(state, enqueue, planning, T0, limit=500) == 0  # new objects get a time, no job
    times = await due_times(state)
    assert sum(t is not None for t in times.values()) == 500  # bounded: the rest at the next calls
    while (
        await plan(state, enqueue, planning, T0, limit=500) == 0 and None in (await due_times(state)).values()
    ):
        pass
    times = await due_times(state)
    assert None not in times.values()
    assert_spread([t for t in times.values() if t is not None], T0, MAILBOX_INTERVAL)
    assert enqueue.jobs == []


async def test_each_mailbox_is_enqueued_once_per_interval_in_batches_of_its_credential(
    state: AppState, planning: Settings, seeded: dict[int, int]
) -> None:
    enqueue = FakeEnqueue()
    await plan(state, enqueue, planning, T0, limit=5000)
    now = T0
    per_step: list[int] = []
    while now < T0 + timedelta(seconds=2 * MAILBOX_INTERVAL):
        now += STEP
        before = len(enqueue.jobs)
        await plan(state, enqueue, planning, now)
        per_step.append(sum(len(p.get("mailbox_ids", ())) for _w, _k, p, _d in enqueue.jobs[before:]))
    enqueued: dict[int, list[datetime]] = defaultdict(list)
    for when, payload, key in mailbox_jobs(enqueue):
        ids = payload["mailbox_ids"]
        assert 1 <= len(ids) <= MAILBOXES_PER_JOB
        assert {seeded[mailbox_id] for mailbox_id in ids} == {payload["credential_id"]}  # one credential
        assert key is not None
        for mailbox_id in ids:
            enqueued[mailbox_id].append(when)
    assert set(enqueued) == set(seeded)  # every ACTIVE mailbox, never a disconnected one
    lookahead = timedelta(seconds=MAILBOX_INTERVAL / 24)
    interval = timedelta(seconds=MAILBOX_INTERVAL)
    for times in enqueued.values():
        assert times[0] <= T0 + interval + STEP  # nobody waits more than an interval for a first check
        assert len(times) in (2, 3)  # two intervals simulated; a third only when pulled in early
        for first, second in pairwise(times):
            assert interval - lookahead - STEP <= second - first <= interval + lookahead + STEP
    # Spread: no step carries more than a tenth of all mailboxes (1200 per hour, 30 s steps).
    assert max(per_step) <= len(seeded) // 10
    # Batches come out fuller than one mailbox per job (the lookahead fills them).
    sizes = [len(payload["mailbox_ids"]) for _w, payload, _k in mailbox_jobs(enqueue)]
    assert sum(sizes) / len(sizes) >= 5


async def test_credentials_are_enqueued_once_per_their_interval(
    state: AppState, planning: Settings, seeded: dict[int, int]
) -> None:
    enqueue = FakeEnqueue()
    await plan(state, enqueue, planning, T0, limit=5000)
    now = T0
    while now < T0 + timedelta(seconds=3 * CREDENTIAL_INTERVAL):
        now += STEP
        await plan(state, enqueue, planning, now)
    checks: dict[int, list[datetime]] = defaultdict(list)
    for when, kind, payload, key in enqueue.jobs:
        if kind == CREDENTIAL_JOB:
            checks[payload["credential_id"]].append(when)
            assert key == f"{CREDENTIAL_JOB}:{payload['credential_id']}"
    assert set(checks) == set(seeded.values())
    for times in checks.values():
        assert len(times) == 3
        gaps = {(b - a).total_seconds() for a, b in pairwise(times)}
        assert gaps == {CREDENTIAL_INTERVAL}  # its own slot, every interval


async def test_after_downtime_the_backlog_drains_in_bounded_calls_and_spreads_again(
    state: AppState, planning: Settings, seeded: dict[int, int]
) -> None:
    enqueue = FakeEnqueue()
    await plan(state, enqueue, planning, T0, limit=5000)
    restart = T0 + timedelta(seconds=5 * MAILBOX_INTERVAL)  # down for five intervals: everything overdue
    sizes = []
    while True:
        before = len(mailbox_jobs(enqueue))
        await plan(state, enqueue, planning, restart, limit=200)
        batch = sum(len(p["mailbox_ids"]) for _w, p, _k in mailbox_jobs(enqueue)[before:])
        if batch == 0:
            break
        sizes.append(batch)
    assert all(size <= 200 + CREDENTIALS * MAILBOXES_PER_JOB for size in sizes)
    assert len(sizes) >= len(seeded) // (200 + CREDENTIALS * MAILBOXES_PER_JOB)
    counts = Counter(m for _w, p, _k in mailbox_jobs(enqueue) for m in p["mailbox_ids"])
    assert counts == dict.fromkeys(seeded, 1)  # each overdue mailbox once, not once per missed interval
    times = [t for t in (await due_times(state)).values() if t is not None]
    lookahead = timedelta(seconds=MAILBOX_INTERVAL / 24)  # not sooner than the planner's lookahead
    assert_spread(times, restart + lookahead, MAILBOX_INTERVAL)  # back on their own phases, not bunched


async def test_a_credential_is_due_at_its_reminder_thresholds_and_its_expiry(
    state: AppState, settings: Settings
) -> None:
    """With hourly checks, a reminder or the expiry would otherwise come up to an hour late."""
    hourly = settings.model_copy(update={"health_credential_interval": 3600})
    expires = T0 + timedelta(days=7, seconds=90)  # the 7-day threshold is 90 s after T0
    async with state.transactions.begin() as session:
        account = Account(name="acme")
        session.add(account)
        await session.flush()
        credential = GraphCredential(
            account_id=account.id,
            name="c",
            tenant_id="t.example",
            tenant_key="t.example",
            client_id="00000000-0000-4000-8000-000000000000",
            secret_ciphertext=b"sealed",
            secret_expires_at=expires,
        )
        session.add(credential)
    enqueue = FakeEnqueue()
    for milestone in (expires - timedelta(days=7), expires - timedelta(days=1), expires):
        await plan(state, enqueue, hourly, milestone - timedelta(minutes=1))  # due or overdue: planned
        async with state.sessions() as session:
            due = await session.scalar(select(GraphCredential.next_check_at))
        assert due is not None
        assert due <= milestone  # not its next hourly slot, which is later
        before = len(enqueue.jobs)
        await plan(state, enqueue, hourly, milestone)
        assert [kind for _w, kind, _p, _k in enqueue.jobs[before:]] == [CREDENTIAL_JOB]


async def test_the_planning_task_plans_in_a_transaction_of_its_own(
    state: AppState, seeded: dict[int, int]
) -> None:
    enqueue = FakeEnqueue()
    task = planning_task(state, enqueue)
    await task()  # new objects get their due times (committed: visible to another session)
    times = await due_times(state)
    assert sum(t is not None for t in times.values()) == min(len(seeded), PLAN_LIMIT)
    assert enqueue.jobs == []
