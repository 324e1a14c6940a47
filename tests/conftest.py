"""Shared fixtures: real SQLite and PostgreSQL through the same migrations, the real ASGI stack, and the
bundled Microsoft simulator over real HTTPS and DNS.

Backends come from M365CONNECT_TEST_BACKENDS (default "sqlite,postgresql"). PostgreSQL tests run in a
database created for this run with a random name and dropped at the end; M365CONNECT_TEST_POSTGRES_URL
points at the server (default postgresql+asyncpg://postgres@127.0.0.1:5432/test).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
from collections.abc import AsyncIterator, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import hypothesis
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from m365connect.app import create_app
from m365connect.crypto import generate_key
from m365connect.db.engine import create_engine
from m365connect.db.migrate import upgrade_to_head
from m365connect.settings import Settings
from m365connect.simulator import FakeMicrosoft, load_scenario
from m365connect.state import AppState, open_state
from tests.factories import key_for
from tests.processes import Children

# Generated-input tests judge what the code does, not how fast the machine draws examples: on a loaded
# 2-CPU machine (two xdist workers beside process tests) Hypothesis's speed checks failed a property test.
hypothesis.settings.register_profile(
    "m365connect", suppress_health_check=[hypothesis.HealthCheck.too_slow], deadline=None
)
hypothesis.settings.load_profile("m365connect")

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_SCENARIO = ROOT / "examples" / "scenario.yaml"
PG_ADMIN_URL = os.environ.get(
    "M365CONNECT_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
BACKENDS = [
    b.strip() for b in os.environ.get("M365CONNECT_TEST_BACKENDS", "sqlite,postgresql").split(",") if b
]
TABLES = ("mailboxes", "graph_credentials", "api_keys", "accounts", "graph_pace_budgets", "graph_pace_slots")


def _blocking(work: Coroutine[Any, Any, None]) -> None:
    """Run a coroutine to completion on its own loop in a thread (session fixtures may be set up
    from inside a test's running loop)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, work).result()


async def _migrate(url: str) -> None:
    engine = create_engine(url)
    try:
        await upgrade_to_head(engine)
    finally:
        await engine.dispose()


async def _admin(statement: str) -> None:
    engine = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            await connection.execute(text(statement))
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for each test."""
    path = tmp_path_factory.mktemp("db") / "template.db"
    _blocking(_migrate(f"sqlite+aiosqlite:///{path}"))
    return path


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL database of this run only (random name), migrated once, dropped at the end."""
    name = f"m365connect_test_{secrets.token_hex(6)}"
    _blocking(_admin(f'CREATE DATABASE "{name}"'))
    url = make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    try:
        _blocking(_migrate(url))
        yield url
    finally:
        _blocking(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The database backend of this test run."""
    return str(request.param)


@pytest.fixture
async def database_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A clean, migrated database for one test."""
    if backend == "sqlite":
        path = tmp_path / "m365connect.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite+aiosqlite:///{path}"
        return
    url = request.getfixturevalue("postgres_url")
    yield url
    await truncate(url, TABLES)


async def truncate(postgres_url: str, tables: tuple[str, ...]) -> None:
    """Empty these PostgreSQL tables and restart their ids."""
    engine = create_engine(postgres_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeMicrosoft]:
    """The bundled Microsoft simulator on the example scenario, over real HTTPS and DNS."""
    scenario = load_scenario(EXAMPLE_SCENARIO)
    with FakeMicrosoft(scenario, state_dir=tmp_path_factory.mktemp("fake-microsoft")) as running:
        yield running


@pytest.fixture
def microsoft(fake: FakeMicrosoft) -> Iterator[FakeMicrosoft]:
    """The simulator with its faults, counters and directory reset before and after the test."""
    baseline = fake.faults.model_copy()
    scenario = fake.scenario
    fake.stats.reset()
    yield fake
    if fake.scenario is not scenario:
        fake.change_directory(scenario)
    for field, value in baseline.model_dump().items():
        setattr(fake.faults, field, value)
    fake.stats.reset()


@pytest.fixture
def settings(database_url: str, microsoft: FakeMicrosoft) -> Settings:
    """Settings pointing at the test database and the simulator, as an operator would configure them."""
    return Settings(
        database_url=database_url,
        encryption_keys=generate_key(),
        login_url=microsoft.base_url,
        graph_url=microsoft.base_url,
        ca_bundle=microsoft.ca_path,
        dns_nameservers=f"127.0.0.1:{microsoft.dns_port}",
        dns_timeout=0.5,
    )


@pytest.fixture
def children() -> Iterator[Children]:
    """Processes started by one test, stopped (terminated, then killed) whatever happens."""
    started = Children()
    yield started
    started.stop_all()


@pytest.fixture
async def state(settings: Settings) -> AsyncIterator[AppState]:
    """The long-lived service objects, as the app's lifespan builds them."""
    async with open_state(settings) as built:
        yield built


@pytest.fixture
async def client(settings: Settings, state: AppState) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client talking to the app through the real ASGI stack."""
    app = create_app(settings, state=state)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://m365connect.test") as http:
        yield http


@pytest.fixture
async def api_key(state: AppState) -> str:
    """An API key of account `acme`."""
    return await key_for(state, "acme")


@pytest.fixture
async def other_api_key(state: AppState) -> str:
    """An API key of another account, `globex`."""
    return await key_for(state, "globex")
