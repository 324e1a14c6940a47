"""Two service processes on one PostgreSQL database, as in a multi-replica deployment (issue 5, item 1)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select, text

from m365connect.accounts.service import create_api_key
from m365connect.credentials.models import GraphCredential
from m365connect.crypto import generate_key
from m365connect.db.engine import create_engine, create_session_factory
from m365connect.mailboxes.models import Mailbox
from m365connect.simulator import FakeMicrosoft
from tests.conftest import BACKENDS, TABLES
from tests.factories import BULK, CREDENTIALS, credential_body
from tests.helpers import headers, ids_per_address
from tests.processes import Children, free_port, wait_until_healthy
from tests.served import service_env

pytestmark = pytest.mark.skipif("postgresql" not in BACKENDS, reason="needs the PostgreSQL backend")

ADDRESSES = [
    "jim@contoso.com",
    "pam@contoso.com",
    "oscar@contoso.com",
    "nate@contoso.com",
    "accounting@contoso.com",
]


@pytest.fixture
async def replicas(
    postgres_url: str, microsoft: FakeMicrosoft, tmp_path: Path
) -> AsyncIterator[tuple[list[str], str]]:
    """Two `m365connect serve` processes on the run's PostgreSQL database; yields their URLs and a key."""
    env = service_env(database_url=postgres_url, keys=generate_key(), microsoft=microsoft)
    children = Children()
    engine = create_engine(postgres_url)
    try:
        urls = []
        for name in ("a", "b"):
            port, log = free_port(), tmp_path / f"replica-{name}.log"
            child = children.start(["serve", "--port", str(port)], cwd=tmp_path, env=env, log=log)
            urls.append(f"http://127.0.0.1:{port}")
            wait_until_healthy(child, urls[-1], log=log)
        async with create_session_factory(engine)() as session:
            key = (await create_api_key(session, account_name="replicated")).plaintext
            await session.commit()
        yield urls, key
    finally:
        children.stop_all()
        async with engine.begin() as connection:
            await connection.execute(text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))
        await engine.dispose()


async def _rows(postgres_url: str) -> tuple[list[Mailbox], set[int]]:
    engine = create_engine(postgres_url)
    try:
        async with create_session_factory(engine)() as session:
            mailboxes = list((await session.scalars(select(Mailbox))).all())
            credentials = set((await session.scalars(select(GraphCredential.id))).all())
    finally:
        await engine.dispose()
    return mailboxes, credentials


async def test_twenty_overlapping_bulks_across_two_replicas(
    replicas: tuple[list[str], str], postgres_url: str, microsoft: FakeMicrosoft
) -> None:
    urls, key = replicas
    clients = [httpx.AsyncClient(base_url=url, timeout=60) for url in urls]
    try:
        created = await clients[0].post(CREDENTIALS, json=credential_body(), headers=headers(key))
        assert created.status_code == 201, created.text
        microsoft.faults.latency_ms = 20
        chooser = random.Random(7)
        bodies = [chooser.sample(ADDRESSES, k=chooser.randint(2, len(ADDRESSES))) for _ in range(20)]
        responses = await asyncio.gather(
            *(
                clients[i % 2].post(
                    BULK, json={"accounts": [{"mailbox_email": e} for e in emails]}, headers=headers(key)
                )
                for i, emails in enumerate(bodies)
            )
        )
    finally:
        for http in clients:
            await http.aclose()
    ids = ids_per_address(bodies, responses)
    mailboxes, _ = await _rows(postgres_url)
    active = [row for row in mailboxes if row.status == "ACTIVE"]
    assert sorted(row.email for row in active) == sorted(ids)
    assert {row.email: row.id for row in active} == ids


async def test_deleting_a_credential_on_one_replica_while_the_other_connects(
    replicas: tuple[list[str], str], postgres_url: str, microsoft: FakeMicrosoft
) -> None:
    urls, key = replicas
    a, b = (httpx.AsyncClient(base_url=url, timeout=60) for url in urls)
    try:
        credential = (await a.post(CREDENTIALS, json=credential_body(), headers=headers(key))).json()
        microsoft.faults.latency_ms = 40
        body = {
            "credential_id": credential["credential_id"],
            "accounts": [{"mailbox_email": e} for e in ADDRESSES],
        }

        async def delete_soon() -> httpx.Response:
            await asyncio.sleep(0.05)
            return await b.delete(f"{CREDENTIALS}/{credential['credential_id']}", headers=headers(key))

        added, deleted = await asyncio.gather(a.post(BULK, json=body, headers=headers(key)), delete_soon())
    finally:
        await a.aclose()
        await b.aclose()
    mailboxes, credentials = await _rows(postgres_url)
    if deleted.status_code == 204:
        assert (added.status_code, added.json()) == (422, {"message": "INVALID_CREDENTIAL_ID"})
        assert mailboxes == []
    else:
        assert (deleted.status_code, deleted.json()) == (
            422,
            {"message": "MICROSOFT_GRAPH_CREDENTIAL_IN_USE"},
        )
        assert added.status_code == 201
    assert all(row.credential_id in credentials for row in mailboxes if row.status == "ACTIVE")
