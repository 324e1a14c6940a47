"""One service instance on a fresh database, with an API key and the scenario's credential."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import scenario

import processes

CREDENTIALS_PATH = "/rest/v2/mailboxes/microsoft/credentials"


@dataclass
class Service:
    """A running service: its URL, API key and process."""

    url: str
    api_key: str
    credential_id: int
    child: processes.Child

    def client(self, timeout: float = 600.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"x-api-key": self.api_key}, timeout=timeout)


@contextmanager
def fresh_database(database_url: str | None, workdir: Path) -> Iterator[str]:
    """A temporary SQLite file, or a new PostgreSQL database (created and dropped) on that server."""
    if database_url is None:
        yield f"sqlite+aiosqlite:///{workdir / f'bench-{uuid.uuid4().hex[:8]}.db'}"
        return
    name = f"m365bench_{uuid.uuid4().hex[:10]}"
    admin = database_url.replace("postgresql+asyncpg://", "postgresql://")
    _psql(admin, f"CREATE DATABASE {name}")
    try:
        yield f"{database_url.rsplit('/', 1)[0]}/{name}"
    finally:
        _psql(admin, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _psql(url: str, statement: str) -> None:
    import asyncio

    import asyncpg

    async def run() -> None:
        connection = await asyncpg.connect(url)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(run())


def service_env(sim: dict[str, Any], database_url: str, max_accounts: int, key: str) -> dict[str, str]:
    """The service's environment, pointed at the simulator."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("M365CONNECT_")}
    env.update(
        {
            "M365CONNECT_DATABASE_URL": database_url,
            "M365CONNECT_ENCRYPTION_KEYS": key,
            "M365CONNECT_LOGIN_URL": sim["base_url"],
            "M365CONNECT_GRAPH_URL": sim["base_url"],
            "M365CONNECT_CA_BUNDLE": sim["ca_path"],
            "M365CONNECT_DNS_NAMESERVERS": sim["dns"],
            "M365CONNECT_MAX_ACCOUNTS_PER_REQUEST": str(max_accounts),
            # The per-key rate limit (600/min, burst 100 by default) would answer most of the plain-API
            # load with 429: the benchmark measures throughput, so the limiter is checked but never hit.
            "M365CONNECT_RATE_LIMIT_PER_MINUTE": "100000000",
            "M365CONNECT_RATE_LIMIT_BURST": "100000000",
        }
    )
    return env


@contextmanager
def running_service(
    sim: dict[str, Any],
    *,
    database_url: str | None,
    max_accounts: int,
    extra_env: dict[str, str] | None = None,
) -> Iterator[Service]:
    """Fresh database, API key, `m365connect serve`, one credential; everything removed on exit.
    `extra_env` is added to the environment of the service and its CLI commands (e.g. PYTHONPATH)."""
    workdir = Path(tempfile.mkdtemp(prefix="m365bench-"))
    try:
        with fresh_database(database_url, workdir) as url:
            key = processes.run_cli(["encryption", "generate-key"], dict(os.environ)).strip().splitlines()[-1]
            env = {**service_env(sim, url, max_accounts, key), **(extra_env or {})}
            api_key = processes.run_cli(["api-keys", "create", "--account", "bench"], env).splitlines()[-1]
            port = processes.free_port()
            child = processes.start_service(env, port, workdir / "service.log")
            try:
                service = Service(f"http://127.0.0.1:{port}", api_key.strip(), 0, child)
                with service.client() as client:
                    created = client.post(
                        CREDENTIALS_PATH,
                        json=scenario.credential_body("bench"),
                    )
                    if created.status_code != 201:
                        raise RuntimeError(f"credential: {created.status_code} {created.text}")
                    service.credential_id = int(created.json()["credential_id"])
                yield service
            finally:
                child.stop()
    except subprocess.CalledProcessError as exc:
        raise RuntimeError(f"{exc.cmd}: {exc.stderr.decode()}") from exc
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
