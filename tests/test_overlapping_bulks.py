"""Overlapping bulks on two real `serve` processes sharing one PostgreSQL database (issue 9, item 1).

As hard as the review's reproduction: rounds of ten concurrent bulk requests, each a random 15 of the
same 40 addresses, spread over two replicas; then the same with two accounts at once. Before the inserts
were ordered, 10-18 % of these answers were 500 (`deadlock detected`): two transactions inserting the
same addresses in different orders each waited for the other's unique-index entry.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from m365connect.crypto import generate_key
from m365connect.simulator import FakeMicrosoft
from tests.conftest import BACKENDS, TABLES, truncate
from tests.factories import BULK, CREDENTIALS
from tests.helpers import headers
from tests.processes import Children
from tests.served import active, mailbox_rows, new_api_key, serve, service_env

pytestmark = pytest.mark.skipif("postgresql" not in BACKENDS, reason="needs the PostgreSQL backend")

TENANT = "5b2e8c1d-4a7f-4e63-9d0b-3c6a1f8e2d47"
APP = "7c3f9d2e-5b8a-4f74-ae1c-4d7b2a9f3e58"
SECRET = "Ov3rl~Test.Only.Secret_8hJk2Lm5Np9Qr"  # a simulator test value
DOMAIN = "overlap.example"
ADDRESSES = [f"user{i:02d}@{DOMAIN}" for i in range(40)]
ROUNDS = 5
CONCURRENT = 10
PER_REQUEST = 15


def scenario() -> dict[str, Any]:
    """One tenant of 40 mailboxes, one app with the recommended permissions, SPF for the domain."""
    users = [
        {"user_principal_name": e, "display_name": e, "proxy_addresses": [f"SMTP:{e}"]} for e in ADDRESSES
    ]
    app = {
        "client_id": APP,
        "name": "overlap test",
        "roles": ["User.Read.All", "Mail.Send", "MailboxSettings.Read"],
        "secrets": [{"value": SECRET, "expires_at": "2099-12-31T23:59:59Z"}],
    }
    soa = f"@ 3600 IN SOA ns1.{DOMAIN}. hostmaster.{DOMAIN}. 1 3600 600 86400 300\n"
    spf = '@ 3600 IN TXT "v=spf1 include:spf.protection.outlook.com -all"\n'
    return {
        "tenants": [{"id": TENANT, "domains": [DOMAIN], "apps": [app], "users": users}],
        "dns": {"zones": {DOMAIN: soa + spf}},
    }


@pytest.fixture(scope="module")
def tenant(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeMicrosoft]:
    """The simulator serving the 40-mailbox tenant."""
    workdir = tmp_path_factory.mktemp("overlap-microsoft")
    path = workdir / "scenario.json"
    path.write_text(json.dumps(scenario()))
    with FakeMicrosoft(path, state_dir=workdir) as running:
        yield running


@pytest.fixture
async def replicas(postgres_url: str, tenant: FakeMicrosoft, tmp_path: Path) -> AsyncIterator[list[str]]:
    """Two `m365connect serve` processes on the run's PostgreSQL database (emptied afterwards)."""
    env = service_env(database_url=postgres_url, keys=generate_key(), microsoft=tenant)
    children = Children()
    try:
        yield [serve(children, env=env, workdir=tmp_path, name=f"replica-{n}")[0] for n in "ab"]
    finally:
        children.stop_all()
        await truncate(postgres_url, TABLES)


async def _account(postgres_url: str, url: str, *, name: str) -> str:
    """A new account with an API key and a credential for the tenant's app; its key."""
    key = await new_api_key(postgres_url, account=name)
    body = {"tenant_id": TENANT, "client_id": APP, "client_secret": SECRET, "secret_expires_at": "2099-01-01"}
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        created = await http.post(CREDENTIALS, json=body, headers=headers(key))
    assert created.status_code == 201, created.text
    return key


async def _round(
    urls: list[str], keys: list[str], chooser: random.Random
) -> list[tuple[str, list[str], Any]]:
    """CONCURRENT bulks per account at once, alternating replicas; (key, addresses, status, body) each."""
    plan = [(key, chooser.sample(ADDRESSES, k=PER_REQUEST)) for key in keys for _ in range(CONCURRENT)]
    chooser.shuffle(plan)
    clients = [httpx.AsyncClient(base_url=url, timeout=60) for url in urls]
    try:
        responses = await asyncio.gather(
            *(
                clients[i % len(clients)].post(
                    BULK, json={"accounts": [{"mailbox_email": e} for e in emails]}, headers=headers(key)
                )
                for i, (key, emails) in enumerate(plan)
            )
        )
    finally:
        for http in clients:
            await http.aclose()
    return [(key, emails, (r.status_code, r.text)) for (key, emails), r in zip(plan, responses, strict=True)]


async def _assert_consistent(
    postgres_url: str, keys: list[str], answers: list[tuple[str, list[str], Any]]
) -> None:
    """No 500; every item connected; per account, one id per address, the id of its single ACTIVE row."""
    statuses = [status for _, _, (status, _) in answers]
    assert all(status in (201, 207) for status in statuses), statuses
    ids: dict[str, dict[str, set[int]]] = {key: {} for key in keys}
    for key, emails, (_, body) in answers:
        results = json.loads(body)
        assert [item["email"] for item in results] == emails
        assert all(item["success"] for item in results), body
        for item in results:
            ids[key].setdefault(item["email"], set()).add(item["id"])
    rows = active(await mailbox_rows(postgres_url))
    assert len(rows) == sum(len(per_key) for per_key in ids.values())  # each address ACTIVE once per account
    by_account: dict[int, dict[str, int]] = {}
    for row in rows:
        by_account.setdefault(row.account_id, {})[row.email] = row.id
    assert all(len(found) == 1 for per_key in ids.values() for found in per_key.values()), ids
    answered = sorted(sorted((e, found.pop()) for e, found in per_key.items()) for per_key in ids.values())
    assert sorted(sorted(saved.items()) for saved in by_account.values()) == answered


@pytest.mark.parametrize("accounts", [1, 2], ids=["one-account", "two-accounts"])
async def test_rounds_of_overlapping_bulks_on_two_replicas(
    replicas: list[str], postgres_url: str, tenant: FakeMicrosoft, accounts: int
) -> None:
    keys = [await _account(postgres_url, replicas[0], name=f"overlap-{n}") for n in range(accounts)]
    chooser = random.Random(9)
    tenant.faults.latency_ms = 5
    try:
        for _ in range(ROUNDS):
            await truncate(postgres_url, ("mailboxes",))  # every request of the round inserts
            answers = await _round(replicas, keys, chooser)
            await _assert_consistent(postgres_url, keys, answers)
    finally:
        tenant.faults.latency_ms = 0
