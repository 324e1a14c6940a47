"""A writer process for tests/test_event_ordering.py: `python -m tests.event_writer URL IDS ROUNDS TAG`.

Each round, one transaction: record one to three events of a random account (batched), hold the transaction
open for a random moment (the change's own work), then commit. Prints nothing; exits 0 when done.
"""

from __future__ import annotations

import asyncio
import random
import sys

from m365connect.db.engine import create_engine, create_session_factory
from m365connect.events.service import record_events
from m365connect.events.types import EventType


async def write(url: str, account_ids: list[int], rounds: int, tag: str) -> None:
    engine = create_engine(url)
    sessions = create_session_factory(engine)
    try:
        for number in range(rounds):
            async with sessions() as session, session.begin():
                count = random.randint(1, 3)
                events = [
                    (EventType.CREDENTIAL_UPDATED, {"writer": tag, "round": number, "item": item})
                    for item in range(count)
                ]
                await record_events(session, account_id=random.choice(account_ids), events=events)
                # Work of the change still in progress while the id is taken: other writers overlap here.
                await asyncio.sleep(random.random() * 0.004)
    finally:
        await engine.dispose()


if __name__ == "__main__":
    url, ids, rounds, tag = sys.argv[1:5]
    asyncio.run(write(url, [int(item) for item in ids.split(",")], int(rounds), tag))
