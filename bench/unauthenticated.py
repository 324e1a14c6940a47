"""Latency of a legitimate GET while other clients send 2 MiB bodies with a bogus API key (issue 9).

    .venv/bin/python bench/unauthenticated.py [--senders 4] [--gets 200] [--seconds 60]

One `m365connect serve` on a fresh SQLite file, loopback only. The legitimate client (from 127.0.0.2)
sends `--gets` sequential `GET /rest/v2/mailboxes/microsoft/credentials`, first alone, then while
`--senders` processes (from 127.0.0.1) each post a 2 MiB JSON body with a well-formed bogus key in a
loop. Each phase stops after `--gets` requests or `--seconds`, whichever comes first. Run twice: with
the default failed-authentication budget, and with it out of reach (the cost of the edge check alone).
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

import processes

PATH = "/rest/v2/mailboxes/microsoft/credentials"
BULK = "/rest/v2/mailboxes/microsoft/bulk"
BOGUS_KEY = "m365c_" + "a" * 12 + "_" + "b" * 43
_ITEM = b'{"mailbox_email": "a@b.com"}'
BODY = b'{"accounts": [' + b",".join([_ITEM] * (2 * 1024 * 1024 // 29 - 10)) + b"]}"  # valid, under 2 MiB


def _send_bogus(url: str, stop: Any, counts: Any, busy_ms: Any) -> None:
    """Post the 2 MiB body with the bogus key until told to stop; count answers by status, sum their time."""
    with httpx.Client(base_url=url, timeout=30) as http:
        while not stop.is_set():
            started = time.perf_counter()
            try:
                status = http.post(BULK, content=BODY, headers={"x-api-key": BOGUS_KEY}).status_code
            except httpx.TransportError:
                status = 0  # the connection was closed before the answer could be read
            with counts.get_lock():
                counts[{401: 0, 429: 1, 0: 2}.get(status, 3)] += 1
                busy_ms.value += (time.perf_counter() - started) * 1000


def _legitimate(url: str, api_key: str, gets: int, seconds: float) -> list[float]:
    transport = httpx.HTTPTransport(local_address="127.0.0.2")
    latencies: list[float] = []
    deadline = time.monotonic() + seconds
    with httpx.Client(base_url=url, transport=transport, headers={"x-api-key": api_key}, timeout=30) as http:
        while len(latencies) < gets and time.monotonic() < deadline:
            started = time.perf_counter()
            response = http.get(PATH)
            latencies.append((time.perf_counter() - started) * 1000)
            if response.status_code != 200:
                raise RuntimeError(f"legitimate GET: {response.status_code} {response.text}")
    return latencies


def _summary(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        "count": len(ordered),
        "median_ms": round(statistics.median(ordered), 1),
        "p95_ms": round(ordered[int(len(ordered) * 0.95) - 1], 1),
        "max_ms": round(ordered[-1], 1),
    }


def _phase(url: str, api_key: str, *, senders: int, gets: int, seconds: float) -> dict[str, Any]:
    stop = multiprocessing.Event()
    counts, busy_ms = multiprocessing.Array("i", 4), multiprocessing.Value("d", 0.0)
    children = [
        multiprocessing.Process(target=_send_bogus, args=(url, stop, counts, busy_ms)) for _ in range(senders)
    ]
    for child in children:
        child.start()
    try:
        time.sleep(1.0 if senders else 0)  # let the senders get going
        started = time.monotonic()
        result: dict[str, Any] = _summary(_legitimate(url, api_key, gets, seconds))
        elapsed = time.monotonic() - started
    finally:
        stop.set()
        for child in children:
            child.join(timeout=60)
    if senders:
        refused = dict(zip(("401", "429", "reset", "other"), counts[:], strict=True))
        result["bogus_answers"] = refused
        result["bogus_per_second"] = round(sum(counts[:]) / (elapsed + 1.0), 1)
        result["bogus_mean_ms"] = round(busy_ms.value / max(1, sum(counts[:])), 1)
    return result


def _run(args: argparse.Namespace, workdir: Path, *, failure_budget: bool) -> dict[str, Any]:
    key = processes.run_cli(["encryption", "generate-key"], dict(os.environ)).strip().splitlines()[-1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("M365CONNECT_")}
    env.update(
        M365CONNECT_DATABASE_URL=f"sqlite+aiosqlite:///{workdir / f'unauth-{failure_budget}.db'}",
        M365CONNECT_ENCRYPTION_KEYS=key,
        M365CONNECT_LOG_LEVEL="WARNING",
        M365CONNECT_RATE_LIMIT_PER_MINUTE="100000000",  # the legitimate client is never limited
        M365CONNECT_RATE_LIMIT_BURST="100000000",
    )
    if not failure_budget:
        env.update(
            M365CONNECT_AUTH_FAILURES_BURST="100000000", M365CONNECT_AUTH_FAILURES_PER_MINUTE="100000000"
        )
    api_key = processes.run_cli(["api-keys", "create", "--account", "bench"], env).splitlines()[-1].strip()
    port = processes.free_port()
    child = processes.start_service(env, port, workdir / f"service-{failure_budget}.log")
    url = f"http://127.0.0.1:{port}"
    try:
        alone = _phase(url, api_key, senders=0, gets=args.gets, seconds=args.seconds)
        loaded = _phase(url, api_key, senders=args.senders, gets=args.gets, seconds=args.seconds)
    finally:
        child.stop()
    return {"alone": alone, f"with_{args.senders}_senders": loaded}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--senders", type=int, default=4)
    parser.add_argument("--gets", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="m365bench-unauth-") as workdir:
        report = {
            "senders": args.senders,
            "default_failure_budget": _run(args, Path(workdir), failure_budget=True),
            "no_failure_budget": _run(args, Path(workdir), failure_budget=False),
        }
    print(json.dumps(report, indent=2))  # noqa: T201 - the report is the output


if __name__ == "__main__":
    main()
