"""Planning: which checks are due, enqueued as jobs in the caller's transaction (API.md 6).

Run every few seconds by one periodic task across all processes. Each call reads at most `limit` due
objects through indexes (ACTIVE mailboxes by `next_check_at`), so it stays cheap with 100,000 mailboxes,
and a backlog (after downtime) drains at a bounded rate instead of all at once. Each mailbox's due time
follows its own phase in the interval (schedule.py): checks spread evenly and each mailbox is planned
once per interval. A credential's mailboxes due within the next `lookahead` are pulled into its batch, so
Graph `$batch` requests go out full (20 items) rather than one mailbox at a time.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from m365connect.health import repository
from m365connect.health.announcements import REMINDER_DAYS
from m365connect.health.schedule import advance, next_milestone, next_slot
from m365connect.settings import Settings
from m365connect.work.ports import Enqueue

CREDENTIAL_JOB = "health.credential"
MAILBOXES_JOB = "health.mailboxes"
CREDENTIAL_KIND = "credential"  # the phase keys of schedule.py
MAILBOX_KIND = "mailbox"
# Mailboxes per health.mailboxes job: three Graph $batch requests of 20 lookups.
MAILBOXES_PER_JOB = 60
PLAN_LIMIT = 1000  # due objects read per call (each kind)
LOOKAHEAD_FRACTION = 24  # a credential's batch takes mailboxes due within interval / 24 (1 h of 24 h)


async def plan_checks(
    session: AsyncSession, enqueue: Enqueue, *, now: datetime, settings: Settings, limit: int = PLAN_LIMIT
) -> int:
    """Enqueue the checks due at `now` and move their due times on; the number of jobs enqueued.

    New objects (no due time yet) get their first due time, spread over the interval, and no job yet.
    The caller commits: jobs and due times are saved together or not at all.
    """
    jobs = await _plan_credentials(
        session, enqueue, now=now, interval=settings.health_credential_interval, limit=limit
    )
    jobs += await _plan_mailboxes(
        session, enqueue, now=now, interval=settings.health_mailbox_interval, limit=limit
    )
    return jobs


async def _plan_credentials(
    session: AsyncSession, enqueue: Enqueue, *, now: datetime, interval: int, limit: int
) -> int:
    new = await repository.unplanned_credentials(session, limit=limit)
    await repository.set_credential_due(
        session,
        [
            (
                cid,
                _credential_due(
                    next_slot(now, kind=CREDENTIAL_KIND, object_id=cid, interval=interval), expires, now
                ),
            )
            for cid, expires in new
        ],
    )
    due = await repository.due_credentials(session, now=now, limit=limit)
    for credential_id, _slot, _expires in due:
        await enqueue(
            session,
            CREDENTIAL_JOB,
            {"credential_id": credential_id},
            dedupe_key=f"{CREDENTIAL_JOB}:{credential_id}",
        )
    await repository.set_credential_due(
        session,
        [
            (
                cid,
                _credential_due(
                    advance(slot, now, kind=CREDENTIAL_KIND, object_id=cid, interval=interval), expires, now
                ),
            )
            for cid, slot, expires in due
        ],
    )
    return len(due)


def _credential_due(on_phase: datetime, expires_at: datetime, now: datetime) -> datetime:
    """The credential's next phase slot, or sooner a reminder threshold or its expiry: a reminder or the
    `credential.expired` event then comes when it is due, not up to an interval later."""
    milestone = next_milestone(expires_at, now, reminder_days=REMINDER_DAYS)
    return min(on_phase, milestone) if milestone is not None else on_phase


async def _plan_mailboxes(
    session: AsyncSession, enqueue: Enqueue, *, now: datetime, interval: int, limit: int
) -> int:
    new = await repository.unplanned_mailboxes(session, limit=limit)
    await repository.set_mailbox_due(
        session, [(mid, next_slot(now, kind=MAILBOX_KIND, object_id=mid, interval=interval)) for mid in new]
    )
    due = await repository.due_mailboxes(session, now=now, limit=limit)
    by_credential: dict[int, dict[int, datetime]] = defaultdict(dict)
    for mailbox_id, credential_id, slot in due:
        by_credential[credential_id][mailbox_id] = slot
    margin = timedelta(seconds=interval / LOOKAHEAD_FRACTION)
    lookahead = now + margin
    jobs = 0
    planned: list[tuple[int, datetime]] = []
    for credential_id, slots in sorted(by_credential.items()):
        await _fill(session, credential_id, slots, until=lookahead)
        ids = sorted(slots, key=lambda mid: (slots[mid], mid))
        for start in range(0, len(ids), MAILBOXES_PER_JOB):
            chunk = sorted(ids[start : start + MAILBOXES_PER_JOB])
            await enqueue(
                session,
                MAILBOXES_JOB,
                {"credential_id": credential_id, "mailbox_ids": chunk},
                dedupe_key=_mailboxes_key(credential_id, chunk),
            )
            jobs += 1
        planned += [
            (mid, advance(slot, now, kind=MAILBOX_KIND, object_id=mid, interval=interval, margin=margin))
            for mid, slot in slots.items()
        ]
    await repository.set_mailbox_due(session, planned)
    return jobs


async def _fill(
    session: AsyncSession, credential_id: int, slots: dict[int, datetime], *, until: datetime
) -> None:
    """Top the credential's last batch up with its mailboxes due soonest (within the lookahead)."""
    room = -len(slots) % MAILBOXES_PER_JOB
    if room == 0:
        return
    soon = await repository.soon_due_of_credential(
        session, credential_id=credential_id, until=until, limit=len(slots) + room
    )
    for mailbox_id, slot in soon:
        if room == 0:
            break
        if mailbox_id not in slots:
            slots[mailbox_id] = slot
            room -= 1


def _mailboxes_key(credential_id: int, mailbox_ids: list[int]) -> str:
    digest = hashlib.sha256(",".join(map(str, mailbox_ids)).encode()).hexdigest()[:16]
    return f"{MAILBOXES_JOB}:{credential_id}:{digest}"
