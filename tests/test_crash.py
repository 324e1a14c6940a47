"""`kill -9` of a real service in the middle of bulk connections, then restart and resend (issue 5).

A 1000-user tenant; one request of 600 mailboxes (slow: 250 ms per Microsoft round trip) and eight of 50
sent one after another. The service is killed with SIGKILL as soon as the database shows two small
requests committed, while the large one is still running. Then: every request's mailboxes are all saved
or none (one transaction each), every saved row is whole, and after a restart on the same database the
same 1000 addresses sent again connect every address exactly once.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from m365connect.crypto import generate_key
from m365connect.mailboxes.models import Mailbox
from m365connect.simulator import FakeMicrosoft
from tests.factories import BULK, CREDENTIALS, one_tenant_scenario
from tests.helpers import headers
from tests.processes import Children
from tests.served import active, mailbox_rows, new_api_key, serve, service_env

TENANT = "0d3f6b2a-7c41-4e9a-b8d5-2a6c9e1f4b70"
APP = "9a4e2c7b-3f16-4d8a-a5e9-7b1c0d2f6e38"
SECRET = "Cr4sh~Test.Only.Secret_5kLm9Nq2Rt7Xz"  # a simulator test value
DOMAIN = "crash.example"
USERS = 1000
LARGE = 600
SMALL = 50
LATENCY_MS = 250
KILL_AFTER_ROWS = 2 * SMALL
DEADLINE_SECONDS = 30.0
LEASE_SECONDS = 5.0


def addresses() -> list[str]:
    """The tenant's mailbox addresses."""
    return [f"user{i}@{DOMAIN}" for i in range(USERS)]


def scenario() -> dict[str, Any]:
    """One tenant of USERS mailboxes, one app with the recommended permissions, SPF for the domain."""
    return one_tenant_scenario(tenant=TENANT, app=APP, secret=SECRET, domain=DOMAIN, emails=addresses())


@pytest.fixture(scope="module")
def big_tenant(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeMicrosoft]:
    """The simulator serving the 1000-user tenant."""
    workdir = tmp_path_factory.mktemp("crash-microsoft")
    path = workdir / "scenario.json"
    path.write_text(json.dumps(scenario()))
    with FakeMicrosoft(path, state_dir=workdir) as running:
        yield running


def bulk_body(emails: list[str]) -> dict[str, Any]:
    """A bulk request body for these addresses."""
    return {"accounts": [{"mailbox_email": email} for email in emails]}


def assert_rows_whole(rows: list[Mailbox], *, credential_id: int) -> None:
    """Every ACTIVE row is complete and the one-ACTIVE-row-per-address rule holds."""
    live = active(rows)
    for row in live:
        assert row.credential_id == credential_id
        assert row.microsoft_user_id
        assert row.email == row.email.lower()
        assert row.email.endswith(f"@{DOMAIN}")
        assert row.spf_correct is not None
        assert row.dkim_correct is not None
        assert row.connected_at is not None
    emails = [row.email for row in live]
    assert len(emails) == len(set(emails))


async def _send_until_killed(
    url: str, key: str, groups: list[list[str]], database_url: str, child_kill: Any
) -> list[httpx.Response | BaseException]:
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:

        async def send(index: int, emails: list[str]) -> httpx.Response:
            await asyncio.sleep(0 if index == 0 else 0.3 + 0.15 * index)
            return await http.post(BULK, json=bulk_body(emails), headers=headers(key))

        tasks = [asyncio.create_task(send(i, group)) for i, group in enumerate(groups)]
        deadline = time.monotonic() + DEADLINE_SECONDS
        while len(active(await mailbox_rows(database_url))) < KILL_AFTER_ROWS:
            assert time.monotonic() < deadline, "no bulk request committed in time"
            await asyncio.sleep(0.02)
        assert not tasks[0].done(), "the large request finished before the kill: raise LATENCY_MS"
        child_kill()
        return await asyncio.gather(*tasks, return_exceptions=True)


async def test_kill_9_mid_bulk_then_restart_and_resend(
    database_url: str, big_tenant: FakeMicrosoft, tmp_path: Path
) -> None:
    emails = addresses()
    groups = [emails[:LARGE]] + [emails[i : i + SMALL] for i in range(LARGE, USERS, SMALL)]
    # The killed process held the app's Outlook slots: the restarted one waits out their lease before its
    # probes go (docs/reliability.md). A short lease (above a short HTTP timeout, as the service checks)
    # keeps that wait to seconds; the default 60 s would be most of this test's time.
    env = service_env(
        database_url=database_url,
        keys=generate_key(),
        microsoft=big_tenant,
        M365CONNECT_HTTP_TIMEOUT="4",
        M365CONNECT_GRAPH_PACING_LEASE_SECONDS=str(LEASE_SECONDS),
    )
    key = await new_api_key(database_url, account="crash")
    children = Children()
    try:
        url, _ = serve(children, env=env, workdir=tmp_path, name="before-kill")
        credential = {
            "tenant_id": TENANT,
            "client_id": APP,
            "client_secret": SECRET,
            "secret_expires_at": "2099-01-01",
        }
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            created = await http.post(CREDENTIALS, json=credential, headers=headers(key))
        assert created.status_code == 201, created.text
        credential_id = created.json()["credential_id"]
        big_tenant.faults.latency_ms = LATENCY_MS
        victim = children.started[-1]
        outcomes = await _send_until_killed(url, key, groups, database_url, victim.kill)
        assert victim.wait(timeout=10) == -9
        big_tenant.faults.latency_ms = 0

        # After the crash: each request saved all its mailboxes or none; every row is whole.
        rows = await mailbox_rows(database_url)
        assert_rows_whole(rows, credential_id=credential_id)
        saved = {row.email: row.id for row in active(rows)}
        assert len(rows) == len(saved)
        for group, outcome in zip(groups, outcomes, strict=True):
            present = sum(1 for email in group if email in saved)
            assert present in (0, len(group)), (present, len(group))
            if isinstance(outcome, httpx.Response):
                assert outcome.status_code == 201
                assert present == len(group)
        assert isinstance(outcomes[0], httpx.HTTPError)  # the large one died with the process
        assert KILL_AFTER_ROWS <= len(saved) < USERS

        # Restart on the same database and resend everything in one request.
        url, _ = serve(children, env=env, workdir=tmp_path, name="after-restart")
        async with httpx.AsyncClient(base_url=url, timeout=120) as http:
            resent = await http.post(BULK, json=bulk_body(emails), headers=headers(key))
    finally:
        big_tenant.faults.latency_ms = 0
        children.stop_all()
    assert resent.status_code == 201, resent.text[:500]
    results = resent.json()
    assert [item["email"] for item in results] == emails
    assert all(item["success"] for item in results)
    again = {item["email"]: item["id"] for item in results if item.get("already_connected")}
    assert again == saved  # exactly the committed ones, with the ids they had
    final = await mailbox_rows(database_url)
    assert_rows_whole(final, credential_id=credential_id)
    assert sorted(row.email for row in final) == sorted(emails)
    assert {row.email: row.id for row in final} == {item["email"]: item["id"] for item in results}
