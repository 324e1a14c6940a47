"""Helpers of the bulk job tests: a tenant of many mailboxes, a job run to its end, rows read back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from sqlalchemy import select

from m365connect.db.engine import create_engine, create_session_factory
from m365connect.events.models import Event
from m365connect.state import AppState
from tests.factories import BULK, one_tenant_scenario
from tests.helpers import headers

TENANT = "5a0c7e2d-1b43-4f6a-9c8e-3d7b2f1a6e90"
APP = "6b1d8f3e-2c54-4a7b-8d9f-4e8c3a2b7f01"
SECRET = "J0bs~Test.Only.Secret_8hKl2Mn5Pq7Rs"  # a simulator test value
DOMAIN = "jobs.example"
USERS = 600
JOBS = f"{BULK}/jobs"
ASYNC = {"Prefer": "respond-async"}


def addresses(count: int = USERS, start: int = 0) -> list[str]:
    """Mailbox addresses of the tenant."""
    return [f"user{i}@{DOMAIN}" for i in range(start, start + count)]


def scenario() -> dict[str, Any]:
    """One tenant of USERS mailboxes, one app with the recommended permissions, SPF for the domain."""
    return one_tenant_scenario(tenant=TENANT, app=APP, secret=SECRET, domain=DOMAIN, emails=addresses())


CREDENTIAL = {
    "tenant_id": TENANT,
    "client_id": APP,
    "client_secret": SECRET,
    "secret_expires_at": "2099-01-01",
}


def body(emails: list[str], **extra: Any) -> dict[str, Any]:
    """A bulk request body for these addresses."""
    return {"accounts": [{"mailbox_email": email} for email in emails], **extra}


def async_headers(api_key: str, **extra: str) -> dict[str, str]:
    """The API key and `Prefer: respond-async`."""
    return {**headers(api_key), **ASYNC, **extra}


async def wait_for_status(
    http: httpx.AsyncClient,
    api_key: str,
    job_id: int,
    *,
    statuses: tuple[str, ...] = ("DONE",),
    processed: bool = False,
    seconds: float = 60,
) -> dict[str, Any]:
    """Poll the job until its status is one of `statuses` (or, with `processed`, until an item is)."""
    deadline = time.monotonic() + seconds
    while True:
        response = await http.get(f"{JOBS}/{job_id}", headers=headers(api_key))
        assert response.status_code == 200, response.text
        job: dict[str, Any] = response.json()
        if job["processed"] if processed else job["status"] in statuses:
            return job
        assert time.monotonic() < deadline, f"job still {job}"
        await asyncio.sleep(0.05)


async def all_results(http: httpx.AsyncClient, api_key: str, job_id: int) -> list[dict[str, Any]]:
    """Every page of the job's results, concatenated."""
    results: list[dict[str, Any]] = []
    page = 0
    while True:
        response = await http.get(f"{JOBS}/{job_id}/results", params={"page": page}, headers=headers(api_key))
        assert response.status_code == 200, response.text
        data = response.json()
        results.extend(data["content"])
        page += 1
        if page >= data["pagination_data"]["total_pages"]:
            return results


@asynccontextmanager
async def working(state: AppState) -> AsyncIterator[None]:
    """The state's work engine running in the background for the block."""
    stop = asyncio.Event()
    running = asyncio.create_task(state.work.run(stop))
    try:
        yield
    finally:
        stop.set()
        await running


async def events_of(database_url: str, type_: str) -> list[Event]:
    """Every stored event of this type, oldest first, read by a separate connection."""
    engine = create_engine(database_url)
    try:
        async with create_session_factory(engine)() as session:
            rows = await session.scalars(select(Event).where(Event.type == type_).order_by(Event.id))
            return list(rows.all())
    finally:
        await engine.dispose()
