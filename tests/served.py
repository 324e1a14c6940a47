"""A real `m365connect serve` process pointed at the simulator, for crash, rotation and fuzz tests."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import uvicorn
from sqlalchemy import select
from starlette.types import ASGIApp

from m365connect.accounts.service import create_api_key
from m365connect.db.engine import create_engine, create_session_factory
from m365connect.mailboxes.models import ACTIVE, Mailbox
from m365connect.simulator import FakeMicrosoft
from tests.processes import Children, clean_env, free_port, wait_until_healthy


def service_env(*, database_url: str, keys: str, microsoft: FakeMicrosoft, **extra: str) -> dict[str, str]:
    """The environment of a service using this database, these encryption keys and the simulator."""
    return clean_env(
        M365CONNECT_DATABASE_URL=database_url,
        M365CONNECT_ENCRYPTION_KEYS=keys,
        M365CONNECT_LOGIN_URL=microsoft.base_url,
        M365CONNECT_GRAPH_URL=microsoft.base_url,
        M365CONNECT_CA_BUNDLE=str(microsoft.ca_path),
        M365CONNECT_DNS_NAMESERVERS=f"127.0.0.1:{microsoft.dns_port}",
        M365CONNECT_LOG_LEVEL="WARNING",
        # These processes test other things than rate limiting (tests/test_ratelimit.py does that); a loop
        # of connect/disconnect rounds must not run into the default 100-request burst.
        **{"M365CONNECT_RATE_LIMIT_BURST": "100000", "M365CONNECT_RATE_LIMIT_PER_MINUTE": "100000", **extra},
    )


def serve(children: Children, *, env: dict[str, str], workdir: Path, name: str) -> tuple[str, Path]:
    """Start `m365connect serve` on a free port and wait until it answers; its URL and log file."""
    port, log = free_port(), workdir / f"{name}.log"
    child = children.start(["serve", "--port", str(port)], cwd=workdir, env=env, log=log)
    url = f"http://127.0.0.1:{port}"
    wait_until_healthy(child, url, log=log)
    return url, log


async def new_api_key(database_url: str, *, account: str) -> str:
    """An API key created straight in the database (as `m365connect api-keys create` does)."""
    engine = create_engine(database_url)
    try:
        async with create_session_factory(engine)() as session:
            created = await create_api_key(session, account_name=account)
            await session.commit()
    finally:
        await engine.dispose()
    return created.plaintext


async def mailbox_rows(database_url: str) -> list[Mailbox]:
    """Every mailbox row, read by a separate connection."""
    engine = create_engine(database_url)
    try:
        async with create_session_factory(engine)() as session:
            return list((await session.scalars(select(Mailbox).order_by(Mailbox.id))).all())
    finally:
        await engine.dispose()


def active(rows: list[Mailbox]) -> list[Mailbox]:
    """The ACTIVE rows."""
    return [row for row in rows if row.status == ACTIVE]


@asynccontextmanager
async def serving_in_process(app: ASGIApp) -> AsyncIterator[str]:
    """Serve an ASGI app with uvicorn in this event loop on a free port of 127.0.0.1 (lifespan on), for a
    client that must talk real HTTP to it; its base URL. Stopped when the block ends."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        app, log_config=None, log_level="warning", access_log=False, ws="none", lifespan="on"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[listener]))
    while not server.started:
        assert not task.done(), "the service did not start"
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task
        listener.close()
