"""A child process of the pacing tests: `python -m tests.pacing.child URL units N` takes N resource units one
at a time from a shared bucket and prints the wall-clock time of each admission; `... hold LEASE` takes
every Outlook slot with a lease of LEASE seconds, prints `held` and waits to be killed; `... probe ROUNDS`
runs 6 callers of ROUNDS turns each, taking 2 Outlook slots under the learnt limit (up to 12), and prints
`slot start end` (wall clock) for each slot, from after the take to before the release."""

from __future__ import annotations

import asyncio
import sys
import time

from m365connect.db.engine import create_engine
from m365connect.microsoft.pacing import Demand, PaceScope
from m365connect.pacing.pacer import DatabasePacer
from tests.pacing.support import SCOPE, policy


async def main(url: str, mode: str, value: str) -> None:
    engine = create_engine(url)
    pacer: DatabasePacer | None = None
    try:
        if mode == "probe":
            pacer = DatabasePacer(engine, policy(outlook_max_concurrency=12))
            await asyncio.gather(*(_probe(pacer, int(value)) for _ in range(6)))
        elif mode == "units":
            pacer = DatabasePacer(engine, policy())
            for _ in range(int(value)):
                permit = await pacer.acquire(SCOPE, Demand(units=1), deadline=time.monotonic() + 30)
                assert permit is not None
                sys.stdout.write(f"{time.time():.6f}\n")
                sys.stdout.flush()
        else:
            pacer = DatabasePacer(engine, policy(lease_seconds=float(value)))
            background = PaceScope(SCOPE.app_id, SCOPE.tenant_id, interactive=False)
            permit = await pacer.acquire(background, Demand(outlook=4), deadline=time.monotonic() + 30)
            assert permit is not None
            assert permit.lease is not None
            sys.stdout.write("held\n")
            sys.stdout.flush()
            await asyncio.sleep(3600)
    finally:
        if pacer is not None:
            await pacer.aclose()
        await engine.dispose()


async def _probe(pacer: DatabasePacer, rounds: int) -> None:
    background = PaceScope(SCOPE.app_id, SCOPE.tenant_id, interactive=False)
    for _ in range(rounds):
        permit = await pacer.acquire(background, Demand(outlook=2), deadline=time.monotonic() + 30)
        assert permit is not None
        start = time.time()
        permit.flight.sent = time.monotonic()  # what graph.py's trace records (pacing.Flight)
        # A probe is answered before the calls beneath it, which witness it (pacer._witnessed: this
        # process's calls sent before it and still out well into its flight): it carries no more items
        # than its slots, they carry envelopes.
        await asyncio.sleep(0.002 if permit.probe else 0.02)
        permit.flight.answered = time.monotonic()
        end = time.time()
        sys.stdout.write("".join(f"{slot} {start:.6f} {end:.6f}\n" for slot in permit.slots))
        sys.stdout.flush()
        await pacer.release(permit, proven=True)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
