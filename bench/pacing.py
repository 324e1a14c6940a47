"""Graph pacing against the simulator's budgets: the same synchronous bulk with pacing off and on, side by
side in one run, and the cost of the pacer's round trips to the database.

    .venv/bin/python bench/pacing.py [--n 1000] [--domains 20] [--latency-ms 50] [--runs 1]
                                     [--database-url URL] [--round-trips 300]

The simulator enforces Graph's budgets (docs/simulator.md "Budgets": 4 Outlook calls in flight per app,
resource units per app and tenant). For each run: 429s per 1000 Graph requests, seconds, mailboxes
connected, and the time over the budget floor (docs/graph-client.md "Pacing"). Figures: docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import scenario
from bulk import BULK_PATH, RESULTS, simulator
from service_run import fresh_database, running_service

from m365connect.db.engine import create_engine
from m365connect.db.migrate import upgrade_to_head
from m365connect.microsoft.pacing import BATCH_OUTLOOK_PARALLELISM, Demand, PaceScope
from m365connect.pacing.pacer import DatabasePacer, PacingPolicy

OUTLOOK_SLOTS = 4  # the simulator's (and Microsoft's) Outlook concurrency per app, the strict reading


def floor_seconds(n: int, latency_ms: float) -> float:
    """The best the budgets allow: n probes, OUTLOOK_SLOTS at a time per app, each one latency long;
    the lookups (1 resource unit each, n within a bucket of 3,500+) add one envelope's latency."""
    return (n / OUTLOOK_SLOTS + 1) * latency_ms / 1000


def one_run(sim: Any, args: argparse.Namespace, *, paced: bool) -> dict[str, Any]:
    sim.faults(latency_ms=0, graph_throttle_rate=0.0)
    sim.admin.put("/_simulator/budgets", json={"enabled": True}).raise_for_status()
    extra = {"M365CONNECT_GRAPH_PACING": "true" if paced else "false"}
    with running_service(
        sim.info, database_url=args.database_url, max_accounts=max(args.n, 1000), extra_env=extra
    ) as service:
        accounts = [{"mailbox_email": scenario.address(i, args.domains)} for i in range(args.n)]
        body = json.dumps({"credential_id": service.credential_id, "accounts": accounts})
        sim.faults(latency_ms=args.latency_ms)
        sim.admin.post("/_simulator/budgets/reset").raise_for_status()
        with service.client() as client:
            started = time.perf_counter()
            response = client.post(BULK_PATH, content=body, headers={"Content-Type": "application/json"})
            seconds = time.perf_counter() - started
        budgets = sim.admin.get("/_simulator/budgets/stats").json()
    results = response.json() if response.status_code in (201, 207) else []
    errors: dict[str, int] = {}
    for item in results:
        if not item["success"]:
            errors[item["error"]] = errors.get(item["error"], 0) + 1
    graph_admitted = budgets["admitted"].get("directory", 0) + budgets["admitted"].get("outlook", 0)
    graph_throttled = sum(v for k, v in budgets["throttled"].items() if k != "token")
    requests = graph_admitted + graph_throttled
    return {
        "paced": paced,
        "seconds": seconds,
        "status": response.status_code,
        "connected": sum(1 for item in results if item["success"]),
        "errors": errors,
        "graph_requests": requests,
        "throttled": budgets["throttled"],
        "per_1000": 1000 * graph_throttled / requests if requests else 0.0,
        "over_floor": seconds / floor_seconds(args.n, args.latency_ms),
        "outlook_peak_concurrency": budgets["outlook_peak_concurrency"],
    }


async def round_trips(url: str, count: int) -> dict[str, float]:
    """Milliseconds per envelope's pacing: a lookup envelope's units; a probe envelope's slots + release."""
    engine = create_engine(url)
    try:
        await upgrade_to_head(engine)
        pacer = DatabasePacer(engine, PacingPolicy(directory_units=10**9))
        scope = PaceScope("bench-app", "bench-tenant", interactive=True)
        await pacer.acquire(scope, Demand(units=1), deadline=time.monotonic() + 5)  # rows created
        started = time.perf_counter()
        for _ in range(count):
            await pacer.acquire(scope, Demand(units=20), deadline=time.monotonic() + 5)
        units_ms = (time.perf_counter() - started) * 1000 / count
        started = time.perf_counter()
        for _ in range(count):
            permit = await pacer.acquire(
                scope, Demand(outlook=BATCH_OUTLOOK_PARALLELISM), deadline=time.monotonic() + 5
            )
            assert permit is not None
            await pacer.release(permit)
        slots_ms = (time.perf_counter() - started) * 1000 / count
        await pacer.aclose()
    finally:
        await engine.dispose()
    return {"units_ms": units_ms, "slots_and_release_ms": slots_ms}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--domains", type=int, default=20)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--round-trips", type=int, default=300)
    args = parser.parse_args()
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp, simulator(args.n, args.domains, Path(tmp)) as sim:
        for _ in range(args.runs):
            for paced in (False, True):
                run = one_run(sim, args, paced=paced)
                runs.append(run)
                sys.stdout.write(
                    f"pacing {'on ' if paced else 'off'}: {run['seconds']:.2f} s "
                    f"({run['over_floor']:.2f}x the floor), "
                    f"{run['per_1000']:.0f} 429s per 1000 Graph requests "
                    f"({run['graph_requests']}), {run['connected']}/{args.n} connected {run['errors']}\n"
                )
                sys.stdout.flush()
        with fresh_database(args.database_url, Path(tmp)) as url:
            trips = asyncio.run(round_trips(url, args.round_trips))
    sys.stdout.write(
        f"pacer: {trips['units_ms']:.2f} ms per lookup envelope (units), "
        f"{trips['slots_and_release_ms']:.2f} ms per probe envelope (slots + release)\n"
    )
    backend = "postgresql" if args.database_url else "sqlite"
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"pacing-{backend}-{datetime.now(UTC):%Y%m%d-%H%M%S}.json"
    figures = {
        "n": args.n,
        "latency_ms": args.latency_ms,
        "floor_s": floor_seconds(args.n, args.latency_ms),
        "runs": runs,
        "pacer": trips,
    }
    out.write_text(json.dumps(figures, indent=2))
    sys.stdout.write(f"written {out}\n")


if __name__ == "__main__":
    main()
