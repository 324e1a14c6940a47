"""Fixtures of the bulk job tests: a simulator with a 600-mailbox tenant, settings with small chunks and
quick waves, the state and the API over ASGI, on both databases (the queue emptied after each test)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from m365connect.app import create_app
from m365connect.crypto import generate_key
from m365connect.settings import Settings
from m365connect.simulator import FakeMicrosoft
from m365connect.state import AppState, open_state
from tests.conftest import truncate
from tests.factories import CREDENTIALS, key_for
from tests.helpers import headers
from tests.jobs.support import CREDENTIAL, scenario
from tests.work.helpers import PG_WORK_TABLES


@pytest.fixture(scope="session")
def tenant_fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeMicrosoft]:
    """The simulator serving the jobs tenant."""
    workdir = tmp_path_factory.mktemp("jobs-microsoft")
    path = workdir / "scenario.json"
    path.write_text(json.dumps(scenario()))
    with FakeMicrosoft(path, state_dir=workdir) as running:
        yield running


@pytest.fixture
def tenant(tenant_fake: FakeMicrosoft) -> Iterator[FakeMicrosoft]:
    """The jobs simulator with its faults and counters reset before and after the test."""
    baseline = tenant_fake.faults.model_copy()
    tenant_fake.stats.reset()
    yield tenant_fake
    for field, value in baseline.model_dump().items():
        setattr(tenant_fake.faults, field, value)
    tenant_fake.stats.reset()


@pytest.fixture
async def job_settings(database_url: str, backend: str, tenant: FakeMicrosoft) -> AsyncIterator[Settings]:
    """Small chunks (50), two in flight, quick waves and polls."""
    if backend == "postgresql":
        await truncate(database_url, PG_WORK_TABLES[:-1])
    yield Settings(
        database_url=database_url,
        encryption_keys=generate_key(),
        login_url=tenant.base_url,
        graph_url=tenant.base_url,
        ca_bundle=tenant.ca_path,
        dns_nameservers=f"127.0.0.1:{tenant.dns_port}",
        dns_timeout=0.5,
        bulk_job_chunk_size=50,
        bulk_job_concurrency=2,
        bulk_job_wave_delays="0.1,0.1,0.1,0.1",
        work_poll_seconds=0.05,
        rate_limit_burst=100_000,
        rate_limit_per_minute=100_000,
    )
    if backend == "postgresql":
        await truncate(database_url, PG_WORK_TABLES[:-1])


@pytest.fixture
async def job_state(job_settings: Settings) -> AsyncIterator[AppState]:
    """The service objects on the jobs settings."""
    async with open_state(job_settings) as built:
        yield built


@pytest.fixture
async def http(job_settings: Settings, job_state: AppState) -> AsyncIterator[httpx.AsyncClient]:
    """The API through the real ASGI stack."""
    transport = httpx.ASGITransport(app=create_app(job_settings, state=job_state), raise_app_exceptions=False)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://m365connect.test", timeout=60
    ) as client:
        yield client


@pytest.fixture
async def key(job_state: AppState) -> str:
    """An API key of account `acme`."""
    return await key_for(job_state, "acme")


@pytest.fixture
async def other_key(job_state: AppState) -> str:
    """An API key of account `globex`."""
    return await key_for(job_state, "globex")


@pytest.fixture
async def credential_id(http: httpx.AsyncClient, key: str) -> int:
    """A working credential of `acme` for the jobs tenant."""
    created = await http.post(CREDENTIALS, json=CREDENTIAL, headers=headers(key))
    assert created.status_code == 201, created.text
    return int(created.json()["credential_id"])
