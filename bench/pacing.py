"""Graph pacing, side by side in one run: the same synchronous bulk unpaced, paced with a fixed Outlook
limit of 4, paced with the learnt limit (the default) on the database and on Redis, against the
simulator with its budgets on and off; then the cost of the pacer's steps on the database and on Redis.

    .venv/bin/python bench/pacing.py [--n 1000] [--domains 20] [--latency-ms 50] [--runs 1]
                                     [--budgets on|off|both] [--database-url URL] [--redis-url URL]
                                     [--round-trips 300]

With the budgets on the simulator enforces Graph's (docs/simulator.md "Budgets": 4 Outlook calls in flight
per app, resource units per app and tenant); off, it answers everything. For each run: seconds, the time
over its floor (budgets on: what the budgets allow, docs/graph-client.md "Pacing"; off: the latency floor
of bench/bulk.py), 429s per 1000 Graph requests, mailboxes connected, the simulator's peak of Outlook
calls in flight. Every service starts on a fresh database (and fresh Redis keys): each paced run learns
its Outlook limit from 4. Figures: docs/performance.md.
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

import redis.asyncio as aioredis
import scenario
from bulk import BULK_PATH, RESULTS, simulator
from bulk import floor_seconds as latency_floor
from service_run import fresh_database, running_service

from m365connect.db.engine import create_engine
from m365connect.db.migrate import upgrade_to_head
from m365connect.microsoft.pacing import BATCH_OUTLOOK_PARALLELISM, Demand, PaceScope
from m365connect.pacing.pacer import DatabasePacer, PacingPolicy, StorePacer
from m365connect.pacing.redis_store import DEFAULT_PREFIX, RedisPaceStore

OUTLOOK_SLOTS = 4  # the simulator's (and Microsoft's) Outlook concurrency per app, the strict reading


def floor_seconds(n: int, latency_ms: float) -> float:
    """The best the budgets allow: n probes, OUTLOOK_SLOTS at a time per app, each one latency long;
    the lookups (1 resource unit each, n within a bucket of 3,500+) add one envelope's latency."""
    return (n / OUTLOOK_SLOTS + 1) * latency_ms / 1000


VARIANTS: dict[str, dict[str, str]] = {
    "unpaced": {"M365CONNECT_GRAPH_PACING": "false"},
    "fixed 4": {"M365CONNECT_GRAPH_PACING_OUTLOOK_MAX_CONCURRENCY": "4"},
    "learnt": {},
    "learnt/redis": {"M365CONNECT_GRAPH_PACING_STORE": "redis"},
}


def forget_redis_budgets(url: str) -> None:
    """Remove the pacer's keys from Redis, so that a run starts from what a new app starts from."""

    async def forget() -> None:
        client = aioredis.Redis.from_url(url)
        try:
            keys = [key async for key in client.scan_iter(match=f"{DEFAULT_PREFIX}*")]
            if keys:
                await client.delete(*keys)
        finally:
            await client.aclose()

    asyncio.run(forget())


def one_run(sim: Any, args: argparse.Namespace, *, variant: str, enforced: bool) -> dict[str, Any]:
    sim.faults(latency_ms=0, graph_throttle_rate=0.0)
    sim.admin.put("/_simulator/budgets", json={"enabled": enforced}).raise_for_status()
    extra = dict(VARIANTS[variant])
    if "M365CONNECT_GRAPH_PACING_STORE" in extra:
        extra["M365CONNECT_REDIS_URL"] = args.redis_url
        forget_redis_budgets(args.redis_url)
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
    floor = floor_seconds(args.n, args.latency_ms) if enforced else latency_floor(args.n, args.latency_ms)[1]
    return {
        "variant": variant,
        "budgets": enforced,
        "floor_s": floor,
        "seconds": seconds,
        "status": response.status_code,
        "connected": sum(1 for item in results if item["success"]),
        "errors": errors,
        "graph_requests": requests,
        "throttled": budgets["throttled"],
        "per_1000": 1000 * graph_throttled / requests if requests else 0.0,
        "over_floor": seconds / floor,
        "outlook_peak_concurrency": budgets["outlook_peak_concurrency"],
    }


async def round_trips(pacer: StorePacer, count: int) -> dict[str, float]:
    """Milliseconds per envelope's pacing: a lookup envelope's units; a probe envelope's slots + release."""
    scope = PaceScope("bench-app", "bench-tenant", interactive=True)
    await pacer.acquire(scope, Demand(units=1), deadline=time.monotonic() + 5)  # the budget is created
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
    return {"units_ms": units_ms, "slots_and_release_ms": slots_ms}


async def database_round_trips(url: str, count: int) -> dict[str, float]:
    engine = create_engine(url)
    try:
        await upgrade_to_head(engine)
        return await round_trips(DatabasePacer(engine, PacingPolicy(directory_units=10**9)), count)
    finally:
        await engine.dispose()


async def redis_round_trips(url: str, count: int) -> dict[str, float]:
    prefix = f"m365connect:bench:{time.time_ns()}:"
    store = RedisPaceStore.from_url(url, prefix=prefix)
    try:
        return await round_trips(StorePacer(store, PacingPolicy(directory_units=10**9)), count)
    finally:
        client = aioredis.Redis.from_url(url)
        keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--domains", type=int, default=20)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--budgets", choices=["on", "off", "both"], default="both")
    parser.add_argument(
        "--variants", default=",".join(VARIANTS), help="comma-separated, of: " + ", ".join(VARIANTS)
    )
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--round-trips", type=int, default=300)
    args = parser.parse_args()
    runs: list[dict[str, Any]] = []
    settings = {"on": [True], "off": [False], "both": [False, True]}[args.budgets]
    with tempfile.TemporaryDirectory() as tmp, simulator(args.n, args.domains, Path(tmp)) as sim:
        for _ in range(args.runs):
            for budgets in settings:
                for variant in args.variants.split(","):
                    run = one_run(sim, args, variant=variant, enforced=budgets)
                    runs.append(run)
                    sys.stdout.write(
                        f"budgets {'on ' if budgets else 'off'}  {variant:<14} {run['seconds']:6.2f} s "
                        f"({run['over_floor']:.2f}x the floor of {run['floor_s']:.2f} s), "
                        f"{run['per_1000']:.1f} 429s per 1000 Graph requests ({run['graph_requests']}), "
                        f"{run['connected']}/{args.n} connected {run['errors']}, "
                        f"peak Outlook in flight {run['outlook_peak_concurrency']}\n"
                    )
                    sys.stdout.flush()
        with fresh_database(args.database_url, Path(tmp)) as url:
            trips = {"database": asyncio.run(database_round_trips(url, args.round_trips))}
        trips["redis"] = asyncio.run(redis_round_trips(args.redis_url, args.round_trips))
    for store, figures in trips.items():
        sys.stdout.write(
            f"pacer on {store}: {figures['units_ms']:.2f} ms per lookup envelope (units), "
            f"{figures['slots_and_release_ms']:.2f} ms per probe envelope (slots + release)\n"
        )
    backend = "postgresql" if args.database_url else "sqlite"
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"pacing-{backend}-{datetime.now(UTC):%Y%m%d-%H%M%S}.json"
    figures = {
        "n": args.n,
        "latency_ms": args.latency_ms,
        "budget_floor_s": floor_seconds(args.n, args.latency_ms),
        "runs": runs,
        "pacer": trips,
    }
    out.write_text(json.dumps(figures, indent=2))
    sys.stdout.write(f"written {out}\n")


if __name__ == "__main__":
    main()
