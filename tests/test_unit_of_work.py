"""No transaction stays open while Microsoft answers (m365connect.db.transactions): PostgreSQL is watched
from outside, through pg_stat_activity, while the simulator answers slowly."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from m365connect.app import create_app
from m365connect.db.engine import create_engine
from m365connect.settings import Settings
from m365connect.simulator import FakeMicrosoft
from m365connect.state import open_state
from tests import scenario_values as sv
from tests.conftest import BACKENDS, PG_ADMIN_URL
from tests.factories import CREDENTIALS, bulk, create_credential
from tests.helpers import headers

# Every token and Graph answer takes this long. A transaction left open while Microsoft answers sits idle for
# at least that; the watch counts what has sat idle for half of it. Half of 400 ms was too little on a loaded
# CI machine (two test workers on two CPUs): a gap between two statements of one transaction passed 200 ms
# once in a full run.
LATENCY_MS = 1000.0
IDLE_SECONDS = LATENCY_MS / 2000


@pytest.fixture
def backend() -> str:
    """pg_stat_activity is PostgreSQL's."""
    if "postgresql" not in BACKENDS:
        pytest.skip("needs the PostgreSQL backend")
    return "postgresql"


class TransactionWatch:
    """Samples how many connections to the test database have sat idle inside a transaction for longer than
    half the simulator's latency (a moment between two statements is normal; waiting for Microsoft is not)."""

    def __init__(self, database_url: str) -> None:
        self.database = make_url(database_url).database
        self.samples: list[int] = []
        self.seen: list[tuple[object, ...]] = []  # what each idle transaction last ran (failure message)
        self._stop = asyncio.Event()

    async def run(self) -> None:
        engine = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        query = text(
            "SELECT pid, clock_timestamp() - xact_start, clock_timestamp() - state_change, query "
            "FROM pg_stat_activity WHERE datname = :name AND state = 'idle in transaction' "
            "AND state_change < clock_timestamp() - make_interval(secs => :idle)"
        )
        try:
            async with engine.connect() as connection:
                while not self._stop.is_set():
                    answer = await connection.execute(query, {"name": self.database, "idle": IDLE_SECONDS})
                    found = answer.all()
                    self.samples.append(len(found))
                    self.seen.extend(tuple(row) for row in found)
                    await asyncio.sleep(0.02)
        finally:
            await engine.dispose()

    def stop(self) -> None:
        self._stop.set()


@pytest.fixture
async def watch(database_url: str) -> AsyncIterator[TransactionWatch]:
    watching = TransactionWatch(database_url)
    task = asyncio.create_task(watching.run())
    yield watching
    watching.stop()
    await task


async def test_no_transaction_is_open_while_microsoft_answers(
    settings: Settings,
    client: httpx.AsyncClient,
    api_key: str,
    microsoft: FakeMicrosoft,
    watch: TransactionWatch,
) -> None:
    microsoft.faults.latency_ms = LATENCY_MS
    created = await create_credential(client, api_key=api_key)  # a token request
    rotated = await client.patch(
        f"{CREDENTIALS}/{created['credential_id']}",
        headers=headers(api_key),
        json={"client_secret": sv.WORKING_SECRET_2, "secret_expires_at": "2030-01-01T00:00:00Z"},
    )
    assert rotated.status_code == 200
    # A service whose token cache is empty: the bulk request asks for a token, then Graph, twice.
    async with open_state(settings) as fresh:
        app = create_app(settings, state=fresh)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://m365connect.test") as other:
            answer = await bulk(other, api_key=api_key, emails=["jim@contoso.com", "pam@contoso.com"])
    assert answer.status_code == 201
    # Slow answers were waited for: the watch saw the requests run (at 50 samples/s, for seconds).
    assert len(watch.samples) > 50
    assert max(watch.samples) == 0, watch.seen
