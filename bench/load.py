"""Closed-loop HTTP load on one URL: CONNECTIONS workers over as many keep-alive connections.

`python bench/load.py URL --seconds 5 --connections 32 [--header name:value]` prints one JSON line:
requests, errors, rps, p50_ms, p99_ms (latencies after a 1 s warm-up).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time

import httpx

WARMUP_SECONDS = 1.0


async def _worker(client: httpx.AsyncClient, url: str, stop_at: float, start_at: float, out: dict) -> None:
    while (now := time.perf_counter()) < stop_at:
        try:
            response = await client.get(url)
            ok = response.status_code == 200
        except httpx.HTTPError:
            ok = False
        done = time.perf_counter()
        if now >= start_at:
            if ok:
                out["latencies"].append(done - now)
            else:
                out["errors"] += 1


async def main(url: str, seconds: float, connections: int, headers: dict[str, str]) -> dict[str, float]:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    out: dict = {"latencies": [], "errors": 0}
    async with httpx.AsyncClient(limits=limits, headers=headers, timeout=10.0) as client:
        begin = time.perf_counter()
        start_at, stop_at = begin + WARMUP_SECONDS, begin + WARMUP_SECONDS + seconds
        await asyncio.gather(*(_worker(client, url, stop_at, start_at, out) for _ in range(connections)))
    latencies = sorted(out["latencies"])
    if not latencies:
        return {"requests": 0, "errors": out["errors"], "rps": 0.0, "p50_ms": 0.0, "p99_ms": 0.0}
    return {
        "requests": len(latencies),
        "errors": out["errors"],
        "rps": len(latencies) / seconds,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--header", action="append", default=[])
    args = parser.parse_args()
    sent = dict(item.split(":", 1) for item in args.header)
    sys.stdout.write(json.dumps(asyncio.run(main(args.url, args.seconds, args.connections, sent))) + "\n")
