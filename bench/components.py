"""CPU of the bulk's own steps, in-process and without I/O waits: the per-change figures of
docs/performance.md, which the end-to-end service CPU (psutil, 10 ms, a shared 2-core machine) is too
noisy to show.

    .venv/bin/python bench/components.py [--n 1000] [--database-url postgresql+asyncpg://.../db]

Each figure is the best of `--repeat` runs (noise only ever adds), in ms for N items.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import text

from m365connect.db.base import utcnow
from m365connect.db.engine import create_engine, create_session_factory
from m365connect.db.migrate import upgrade_to_head
from m365connect.mailboxes import repository
from m365connect.mailboxes.addresses import plan
from m365connect.mailboxes.schemas import BulkAccount, BulkRequest

_SEED = (
    "INSERT INTO accounts (id, name, created_at) VALUES (1, 'bench', '2026-01-01 00:00:00')",
    "INSERT INTO graph_credentials (id, account_id, name, tenant_id, tenant_key, client_id,"
    " secret_ciphertext, secret_expires_at, verification_status, created_at, updated_at)"
    " VALUES (1, 1, 'bench', 't', 'k', 'c', :secret, '2099-01-01 00:00:00', 'VALID',"
    " '2026-01-01 00:00:00', '2026-01-01 00:00:00')",
)


def best_ms(work: Callable[[], object], repeat: int) -> float:
    """The smallest CPU time of `repeat` calls, in ms."""
    times = []
    for _ in range(repeat):
        started = time.process_time()
        work()
        times.append(time.process_time() - started)
    return min(times) * 1000


def accounts(n: int) -> list[dict[str, Any]]:
    """The benchmark's request items (bench/scenario.py addresses)."""
    return [
        {"mailbox_email": f"user{i}@domain{i % 20}.example", "display_name": f"User {i}"} for i in range(n)
    ]


async def insert_ms(database_url: str, n: int, repeat: int) -> float:
    """`repository.insert_active` of N new rows (one transaction each, the table emptied between runs)."""
    engine = create_engine(database_url)
    try:
        await upgrade_to_head(engine)
        sessions = create_session_factory(engine)
        async with sessions() as session:
            for table in ("mailboxes", "graph_credentials", "api_keys", "accounts"):
                await session.execute(text(f"DELETE FROM {table}"))
            for statement in _SEED:
                await session.execute(text(statement), {"secret": b"x"})
            await session.commit()
        times = []
        for _ in range(repeat):
            now = utcnow()
            rows = [
                {
                    "account_id": 1,
                    "credential_id": 1,
                    "email": f"user{i}@domain{i % 20}.example",
                    "name": f"User {i}",
                    "microsoft_user_id": f"{i:032x}",
                    "status": "ACTIVE",
                    "spf_correct": True,
                    "dkim_correct": True,
                    "dmarc_correct": True,
                    "connected_at": now,
                }
                for i in range(n)
            ]
            async with sessions() as session:
                await session.execute(text("DELETE FROM mailboxes"))
                await session.commit()
            async with sessions() as session:
                started = time.process_time()
                inserted = await repository.insert_active(session, rows=rows)
                await session.commit()
                times.append(time.process_time() - started)
                assert len(inserted) == n
        return min(times) * 1000
    finally:
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--database-url", help="a database that may be migrated and emptied (default SQLite)")
    args = parser.parse_args()
    items = accounts(args.n)
    body = json.dumps({"credential_id": 1, "accounts": items})
    request = BulkRequest.model_validate_json(body)
    parsed: list[BulkAccount] = request.accounts
    figures = {
        "request body validation": best_ms(lambda: BulkRequest.model_validate_json(body), args.repeat),
        "address checks (plan)": best_ms(lambda: plan(parsed), args.repeat),
    }
    with tempfile.TemporaryDirectory(prefix="m365components-") as tmp:
        url = args.database_url or f"sqlite+aiosqlite:///{Path(tmp) / 'components.db'}"
        figures["insert"] = asyncio.run(insert_ms(url, args.n, args.repeat))
    for name, ms in figures.items():
        sys.stdout.write(f"{name:<28} {ms:8.1f} ms for N={args.n}\n")


if __name__ == "__main__":
    main()
