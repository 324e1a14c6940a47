"""Service CPU of repeated bulks in ONE service process (warm), for profiling our own code.

    .venv/bin/python bench/warm.py [--n 1000] [--bulks 5] [--latency-ms 0]
    M365BENCH_PROFILE=DIR [M365BENCH_PROFILE_RENDERER=pstats] profiles the service with pyinstrument.

`bench/bulk.py` starts a fresh service per bulk, so every figure includes one-time costs (first TLS
handshakes, lazy imports, first statement compilations) and one bulk gives a profiler few samples.
Here one service serves `--bulks` bulks, each for another account (its own API key and credential),
so every bulk verifies and inserts all N addresses; the first bulk shows the one-time costs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import scenario
from bulk import BULK_PATH, simulator
from service_run import CREDENTIALS_PATH, Service, fresh_database, service_env

import processes


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--bulks", type=int, default=5)
    parser.add_argument("--domains", type=int, default=20)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--database-url")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="m365warm-") as tmp:
        workdir = Path(tmp)
        with (
            simulator(args.n, args.domains, workdir) as sim,
            fresh_database(args.database_url, workdir) as url,
        ):
            key = processes.run_cli(["encryption", "generate-key"], dict(os.environ)).strip().splitlines()[-1]
            env = service_env(sim.info, url, max(args.n, 1000), key)
            create = ["api-keys", "create", "--account"]
            keys = [
                processes.run_cli([*create, f"warm{k}"], env).splitlines()[-1].strip()
                for k in range(args.bulks)
            ]
            port = processes.free_port()
            child = processes.start_service(env, port, workdir / "service.log")
            try:
                cpu = [one_bulk(Service(f"http://127.0.0.1:{port}", k, 0, child), sim, args) for k in keys]
            finally:
                child.stop()
    ms = [seconds / args.n * 1000 for seconds in cpu]
    sys.stdout.write(
        json.dumps(
            {
                "n": args.n,
                "latency_ms": args.latency_ms,
                "cpu_ms_per_mailbox": [round(m, 3) for m in ms],
                "warm_median": round(statistics.median(ms[1:] or ms), 3),
                "warm_min": round(min(ms[1:] or ms), 3),
            }
        )
        + "\n"
    )


def one_bulk(service: Service, sim: object, args: argparse.Namespace) -> float:
    """Create this account's credential, then time one bulk of all N addresses; service CPU seconds."""
    with service.client() as client:
        created = client.post(
            CREDENTIALS_PATH,
            json=scenario.credential_body("warm"),
        )
        created.raise_for_status()
        accounts = [
            {"mailbox_email": scenario.address(i, args.domains), "display_name": f"User {i}"}
            for i in range(args.n)
        ]
        body = json.dumps({"credential_id": created.json()["credential_id"], "accounts": accounts})
        sim.faults(latency_ms=args.latency_ms)  # type: ignore[attr-defined]
        before = service.child.cpu_seconds()
        started = time.perf_counter()
        response = client.post(BULK_PATH, content=body, headers={"Content-Type": "application/json"})
        wall = time.perf_counter() - started
        cpu = service.child.cpu_seconds() - before
        connected = sum(1 for item in response.json() if item["success"])
        sys.stderr.write(
            f"bulk: {response.status_code}, {connected} connected, {wall:.2f} s, {cpu:.3f} s CPU\n"
        )
        return cpu


if __name__ == "__main__":
    main()
