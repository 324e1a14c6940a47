"""What one health planning call costs with 100,000 connected mailboxes (issue 11 item 2: "cheap on
100,000 mailboxes"): the calls that give new mailboxes their first due time, a call when nothing is due
(the common case, every few seconds), and a call with a full batch due. The enqueue is a no-op: this is
the planner's own database work. Figures in docs/reliability.md, "Background verification".

    .venv/bin/python bench/health_planner.py [--n 100000] [--credentials 50] [--database-url URL]

Wall time in ms, best of `--repeat` calls (each in its own transaction, rolled back so it can repeat).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from m365connect.db.engine import create_engine, create_session_factory
from m365connect.db.migrate import upgrade_to_head
from m365connect.health.planner import plan_checks
from m365connect.settings import Settings

T0 = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


async def no_enqueue(_session: AsyncSession, _kind: str, _payload: Any, **_kw: Any) -> None:
    """Jobs are not the point here."""


async def seed(sessions: async_sessionmaker[AsyncSession], *, n: int, credentials: int) -> None:
    async with sessions() as session:
        for table in ("events", "mailboxes", "graph_credentials", "api_keys", "accounts"):
            await session.execute(text(f"DELETE FROM {table}"))
        await session.execute(
            text("INSERT INTO accounts (id, name, created_at) VALUES (1, 'bench', :t)"), {"t": T0}
        )
        await session.execute(
            text(
                "INSERT INTO graph_credentials (id, account_id, name, tenant_id, tenant_key, client_id,"
                " secret_ciphertext, secret_expires_at, verification_status, created_at, updated_at)"
                " VALUES (:id, 1, 'bench', :tenant, :tenant, :client, :secret, :expires, 'VALID', :t, :t)"
            ),
            [
                {
                    "id": c,
                    "tenant": f"t{c}.example",
                    "client": f"{c:08d}-0000-4000-8000-000000000000",
                    "secret": b"x",
                    "expires": T0 + timedelta(days=400),
                    "t": T0,
                }
                for c in range(1, credentials + 1)
            ],
        )
        rows = [
            {
                "c": 1 + i % credentials,
                "email": f"u{i}@t{1 + i % credentials}.example",
                "uid": f"u-{i}",
                "t": T0,
            }
            for i in range(n)
        ]
        for start in range(0, n, 10_000):
            await session.execute(
                text(
                    "INSERT INTO mailboxes (account_id, credential_id, email, microsoft_user_id, status,"
                    " spf_correct, dkim_correct, connected_at, health_state)"
                    " VALUES (1, :c, :email, :uid, 'ACTIVE', true, true, :t, 'OK')"
                ),
                rows[start : start + 10_000],
            )
        await session.commit()


async def timed(
    sessions: async_sessionmaker[AsyncSession], settings: Settings, now: datetime, *, commit: bool
) -> tuple[float, int]:
    async with sessions() as session:
        started = time.perf_counter()
        jobs = await plan_checks(session, no_enqueue, now=now, settings=settings)
        await session.flush()
        elapsed = (time.perf_counter() - started) * 1000
        await (session.commit() if commit else session.rollback())
    return elapsed, jobs


async def main(args: argparse.Namespace) -> None:
    url = args.database_url or f"sqlite+aiosqlite:///{Path(tempfile.mkdtemp()) / 'bench.db'}"
    engine = create_engine(url)
    await upgrade_to_head(engine)
    sessions = create_session_factory(engine)
    settings = Settings(database_url=url, encryption_keys="x" * 44)
    await seed(sessions, n=args.n, credentials=args.credentials)
    first = []
    while True:  # new mailboxes get their first due time, 1000 per call
        elapsed, _jobs = await timed(sessions, settings, T0, commit=True)
        first.append(elapsed)
        async with sessions() as session:
            left = await session.scalar(text("SELECT COUNT(*) FROM mailboxes WHERE next_check_at IS NULL"))
        if not left:
            break
    idle = min([(await timed(sessions, settings, T0, commit=False))[0] for _ in range(args.repeat)])
    later = T0 + timedelta(seconds=settings.health_mailbox_interval / 2)
    busy = [await timed(sessions, settings, later, commit=False) for _ in range(args.repeat)]
    median = sorted(first)[len(first) // 2]
    out = sys.stdout
    out.write(f"database: {engine.dialect.name}, {args.n} mailboxes, {args.credentials} credentials\n")
    out.write(f"first planning: {len(first)} calls, median {median:.1f} ms, max {max(first):.1f} ms\n")
    out.write(f"nothing due: {idle:.1f} ms per call\n")
    busiest = min(b[0] for b in busy)
    out.write(f"backlog (half an interval due, limit 1000): {busiest:.1f} ms per call, {busy[0][1]} jobs\n")
    await engine.dispose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--credentials", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--database-url")
    asyncio.run(main(parser.parse_args()))
