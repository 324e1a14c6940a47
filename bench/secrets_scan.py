"""What /readyz pays to know that every stored secret opens: the one full trial decryption (start-up, or
the first probe) against what each later probe does (the key-id count in SQL plus re-trying the rows
already found bad). The figures of docs/reliability.md, "Secrets that do not open".

    .venv/bin/python bench/secrets_scan.py [--n 10000] [--bad 10] [--database-url postgresql+asyncpg://.../db]

Wall time (the database round trips are the point), best of `--repeat` runs, in ms.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from m365connect.credentials.sealing import UnreadableSecrets, secrets_without_key
from m365connect.crypto import SecretBox, credential_secret_aad, generate_key, parse_keys
from m365connect.db.engine import create_engine, create_session_factory
from m365connect.db.migrate import upgrade_to_head

_INSERT = (
    "INSERT INTO graph_credentials (id, account_id, name, tenant_id, tenant_key, client_id,"
    " secret_ciphertext, secret_expires_at, verification_status, created_at, updated_at)"
    " VALUES (:id, 1, 'bench', 't', 'k', :client, :secret, '2099-01-01 00:00:00', 'VALID',"
    " '2026-01-01 00:00:00', '2026-01-01 00:00:00')"
)


async def seed(sessions: async_sessionmaker[AsyncSession], box: SecretBox, *, n: int, bad: int) -> None:
    """N credentials; the first `bad` hold the next row's ciphertext (they do not open)."""
    sealed = [box.seal(f"secret-{i}", associated_data=credential_secret_aad(i)) for i in range(1, n + 2)]
    rows = [
        {"id": i, "client": f"client-{i}", "secret": sealed[i] if i <= bad else sealed[i - 1]}
        for i in range(1, n + 1)
    ]
    async with sessions() as session:
        for table in ("mailboxes", "graph_credentials", "api_keys", "accounts"):
            await session.execute(text(f"DELETE FROM {table}"))
        await session.execute(
            text("INSERT INTO accounts (id, name, created_at) VALUES (1, 'bench', '2026-01-01 00:00:00')")
        )
        await session.execute(text(_INSERT), rows)
        await session.commit()


Work = Callable[[AsyncSession], Awaitable[object]]


async def best_ms(sessions: async_sessionmaker[AsyncSession], work: Work, repeat: int) -> float:
    """The smallest wall time of `repeat` runs of `work` in a fresh session, in ms."""
    times = []
    for _ in range(repeat):
        async with sessions() as session:
            started = time.perf_counter()
            await work(session)
            times.append(time.perf_counter() - started)
    return min(times) * 1000


async def measure(database_url: str, *, n: int, bad: int, repeat: int) -> dict[str, float]:
    """The figures for N credentials of which `bad` do not open."""
    engine = create_engine(database_url)
    try:
        await upgrade_to_head(engine)
        sessions = create_session_factory(engine)
        box = SecretBox(parse_keys(generate_key()))
        await seed(sessions, box, n=n, bad=bad)

        async def full_scan(session: AsyncSession) -> None:
            scanned = UnreadableSecrets()
            await scanned.scan(session, box)
            assert await scanned.count(session, box) == bad

        tracker = UnreadableSecrets()
        async with sessions() as session:
            await tracker.scan(session, box)

        async def probe(session: AsyncSession) -> None:
            assert await secrets_without_key(session, box) == 0
            assert await tracker.count(session, box) == bad

        return {
            f"full trial decryption of {n}": await best_ms(sessions, full_scan, repeat),
            f"later probe ({bad} bad re-tried)": await best_ms(sessions, probe, repeat),
        }
    finally:
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--bad", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--database-url", help="a database that may be migrated and emptied (default SQLite)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # the scan's warning names the bad rows: not wanted here
    with tempfile.TemporaryDirectory(prefix="m365secrets-") as tmp:
        url = args.database_url or f"sqlite+aiosqlite:///{Path(tmp) / 'secrets.db'}"
        figures = asyncio.run(measure(url, n=args.n, bad=args.bad, repeat=args.repeat))
    for name, ms in figures.items():
        sys.stdout.write(f"{name:<36} {ms:8.1f} ms\n")


if __name__ == "__main__":
    main()
