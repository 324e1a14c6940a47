"""Benchmark of POST /rest/v2/mailboxes/microsoft/bulk against the bundled Microsoft simulator.

    .venv/bin/python bench/bulk.py [--n 1000] [--domains 20] [--latency-ms 50] [--database-url URL]
                                   [--sizes 100,1000,5000] [--runs 3] [--large-runs 1] [--quick]
    M365BENCH_PROFILE=DIR profiles every service process with pyinstrument (reports in DIR;
    M365BENCH_PROFILE_RENDERER=pstats for files that `python -m pstats` reads).

Prints its figures and writes them to bench/results/. Method and figures: docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import scenario
from service_run import CREDENTIALS_PATH, running_service

import processes

BULK_PATH = "/rest/v2/mailboxes/microsoft/bulk"
BATCH_SIZE = 20
BATCHES_IN_FLIGHT = 8  # the service's default M365CONNECT_GRAPH_BATCHES_IN_FLIGHT
CALLS_PER_MAILBOX = 2  # a proxyAddresses lookup and a mailboxSettings probe (docs/graph-client.md)
RESULTS = Path(__file__).resolve().parent / "results"


class Simulator:
    """The simulator in its own process, driven through its admin endpoints."""

    def __init__(self, users: int, domains: int, workdir: Path) -> None:
        path = workdir / f"scenario-{users}.json"
        path.write_text(json.dumps(scenario.build(users=users, domains=domains)))
        self.child = processes.start_simulator(path)
        self.info = self.child.info
        self.admin = httpx.Client(base_url=self.info["base_url"], verify=self.info["ca_path"], timeout=30)

    def faults(self, **knobs: Any) -> None:
        self.admin.put("/_simulator/faults", json=knobs).raise_for_status()

    def reset(self) -> None:
        self.admin.post("/_simulator/stats/reset").raise_for_status()

    def stats(self) -> dict[str, int]:
        return dict(self.admin.get("/_simulator/stats").json())

    def stop(self) -> None:
        self.admin.close()
        self.child.stop()


@contextmanager
def simulator(users: int, domains: int, workdir: Path):  # type: ignore[no-untyped-def]
    sim = Simulator(users, domains, workdir)
    try:
        yield sim
    finally:
        sim.stop()


def floor_seconds(n: int, latency_ms: float) -> tuple[int, float]:
    """Sequential round trips the design needs, and their latency."""
    trips = math.ceil(n * CALLS_PER_MAILBOX / BATCH_SIZE / BATCHES_IN_FLIGHT)
    return trips, trips * latency_ms / 1000


def one_bulk(sim: Simulator, args: argparse.Namespace, n: int, *, latency_ms: float, throttle: bool) -> dict:
    """One timed bulk request on a fresh database and a fresh service."""
    sim.faults(
        latency_ms=0,
        graph_throttle_rate=0.1 if throttle else 0.0,
        graph_retry_after=0.2 if throttle else 2.128,
        seed=7,
    )
    sim.reset()  # the credential's creation counts: one token request per credential per run
    with running_service(sim.info, database_url=args.database_url, max_accounts=max(n, 1000)) as service:
        accounts = [
            {"mailbox_email": scenario.address(i, args.domains), "display_name": f"User {i}"}
            for i in range(n)
        ]
        body = json.dumps({"credential_id": service.credential_id, "accounts": accounts})
        sim.faults(latency_ms=latency_ms)
        with service.client() as client:
            cpu_before, sim_cpu_before = service.child.cpu_seconds(), sim.child.cpu_seconds()
            started = time.perf_counter()
            response = client.post(BULK_PATH, content=body, headers={"Content-Type": "application/json"})
            seconds = time.perf_counter() - started
            cpu = service.child.cpu_seconds() - cpu_before
            sim_cpu = sim.child.cpu_seconds() - sim_cpu_before
        results = response.json() if response.status_code in (201, 207) else []
        errors: dict[str, int] = {}
        for item in results:
            if not item["success"]:
                errors[item["error"]] = errors.get(item["error"], 0) + 1
        return {
            "seconds": seconds,
            "status": response.status_code,
            "connected": sum(1 for item in results if item["success"]),
            "errors": errors,
            "spf_dkim_ok": sum(
                1 for item in results if item["success"] and all(item["deliverability"].values())
            ),
            "simulator": sim.stats(),
            "service_cpu_seconds": cpu,
            "simulator_cpu_seconds": sim_cpu,
            "service_peak_rss_mb": service.child.peak_rss_mb(),
        }


def measure(sim: Simulator, args: argparse.Namespace, n: int, runs: int, **kwargs: Any) -> dict:
    """The median of `runs` bulk requests (each on a fresh database), with every run kept."""
    all_runs = [one_bulk(sim, args, n, **kwargs) for _ in range(runs)]
    median = statistics.median(run["seconds"] for run in all_runs)
    return {
        "n": n,
        "runs": all_runs,
        "median_seconds": median,
        "service_cpu_ms_per_mailbox": statistics.median(r["service_cpu_seconds"] for r in all_runs)
        / n
        * 1000,
        "simulator_cpu_ms_per_mailbox": statistics.median(r["simulator_cpu_seconds"] for r in all_runs)
        / n
        * 1000,
        **kwargs,
    }


def baseline(sim: Simulator, args: argparse.Namespace, sample: int) -> dict:
    """msgraph-sdk + azure-identity, one mailbox after another (bench/baseline.py), on `sample` mailboxes."""
    env = {**os.environ, "SSL_CERT_FILE": sim.info["ca_path"], "REQUESTS_CA_BUNDLE": sim.info["ca_path"]}
    addresses = [scenario.address(i, args.domains) for i in range(sample)]
    sim.faults(latency_ms=args.latency_ms, graph_throttle_rate=0.0)
    sim.reset()
    done = subprocess.run(
        [
            processes.PYTHON,
            str(Path(__file__).with_name("baseline.py")),
            sim.info["base_url"],
            scenario.TENANT_ID,
            scenario.CLIENT_ID,
            scenario.CLIENT_SECRET,
            *addresses,
        ],
        env=env,
        capture_output=True,
        timeout=900,
        check=True,
    )
    result = dict(json.loads(done.stdout.decode().strip().splitlines()[-1]))
    result["simulator"] = sim.stats()
    result["seconds_per_mailbox"] = result["seconds"] / sample
    return result


def load(url: str, seconds: float, headers: list[str]) -> dict:
    """bench/load.py in a second process: 32 connections, closed loop."""
    command = [processes.PYTHON, str(Path(__file__).with_name("load.py")), url, "--seconds", str(seconds)]
    for header in headers:
        command += ["--header", header]
    done = subprocess.run(command, capture_output=True, timeout=seconds + 60, check=True)
    return dict(json.loads(done.stdout.decode()))


def plain_api(sim: Simulator, args: argparse.Namespace, seconds: float, workdir: Path) -> dict:
    """GET credentials under load vs a bare constant-JSON FastAPI endpoint on the same uvicorn settings."""
    sim.faults(latency_ms=0)
    with running_service(sim.info, database_url=args.database_url, max_accounts=1000) as service:
        api = load(f"{service.url}{CREDENTIALS_PATH}", seconds, [f"x-api-key:{service.api_key}"])
    bare_child = processes.start_bare_app(processes.free_port(), workdir / "bare.log")
    try:
        port = bare_child.proc.args[-1]  # type: ignore[index]
        bare = load(f"http://127.0.0.1:{port}/bare", seconds, [])
    finally:
        bare_child.stop()
    return {"credentials": api, "bare": bare, "ratio": api["rps"] / bare["rps"] if bare["rps"] else 0.0}


def check_counts(n: int, domains: int, stats: dict[str, int]) -> dict[str, Any]:
    """The simulator's counts against the target formulas of issue 4."""
    graph_limit = math.ceil(n / BATCH_SIZE) * CALLS_PER_MAILBOX
    # 4 per domain (SPF TXT + 2 DKIM selectors + DMARC at _dmarc.<domain>, each bench domain being its own
    # organizational domain) plus Microsoft's include, fetched once.
    dns_limit = 4 * domains + 1
    return {
        "token_requests": (stats["token_requests"], 1),
        "graph_requests": (stats["graph_requests"], graph_limit),
        "batch_items": (stats["batch_items"], n * CALLS_PER_MAILBOX),
        "dns_queries": (stats["dns_queries"], dns_limit),
        "throttled": (stats["throttled"], None),
    }


def print_report(report: dict) -> None:
    out = sys.stdout.write
    cfg = report["config"]
    out(
        f"\nm365connect bulk benchmark  {report['started_at']}  database={cfg['database']}  "
        f"latency={cfg['latency_ms']} ms  domains={cfg['domains']}  cpus={os.cpu_count()}\n\n"
    )
    out(
        f"{'N':>6} {'median s':>9} {'runs s':>22} {'floor s':>8} {'x floor':>8} {'svc cpu ms/mbx':>15} "
        f"{'sim cpu ms/mbx':>15} {'RSS MiB':>8} {'ok':>6}\n"
    )
    for row in report["sizes"]:
        _trips, floor = floor_seconds(row["n"], cfg["latency_ms"])
        runs = ", ".join(f"{r['seconds']:.2f}" for r in row["runs"])
        out(
            f"{row['n']:>6} {row['median_seconds']:>9.2f} {runs:>22} {floor:>8.2f} "
            f"{row['median_seconds'] / floor if floor else 0:>8.1f} "
            f"{row['service_cpu_ms_per_mailbox']:>15.3f} "
            f"{row['simulator_cpu_ms_per_mailbox']:>15.2f} "
            f"{max(r['service_peak_rss_mb'] for r in row['runs']):>8.0f} "
            f"{min(r['connected'] for r in row['runs']):>6}\n"
        )
    out("\nsimulator counts (last run) vs target: measured / limit\n")
    for row in report["sizes"]:
        counts = check_counts(row["n"], cfg["domains"], row["runs"][-1]["simulator"])
        cells = "  ".join(f"{k}={v}/{lim if lim is not None else '-'}" for k, (v, lim) in counts.items())
        out(f"  N={row['n']}: {cells}\n")
    zero = report.get("zero_latency")
    if zero:
        out(
            f"\n0 ms latency, N={zero['n']}: median {zero['median_seconds']:.2f} s = "
            f"{zero['median_seconds'] / zero['n'] * 1000:.3f} ms wall per mailbox; service CPU "
            f"{zero['service_cpu_ms_per_mailbox']:.3f} ms per mailbox; simulator CPU "
            f"{zero['simulator_cpu_ms_per_mailbox']:.2f} ms per mailbox\n"
        )
    thr = report.get("throttled")
    if thr:
        run = thr["runs"][-1]
        ref = next((r["median_seconds"] for r in report["sizes"] if r["n"] == thr["n"]), None)
        out(
            f"throttled (10 % of batch items 429, Retry-After 0.2), N={thr['n']}: "
            f"{thr['median_seconds']:.2f} s"
            + (f" = {thr['median_seconds'] / ref:.2f} x unthrottled" if ref else "")
            + f"; connected {run['connected']}/{thr['n']}; 429s sent {run['simulator']['throttled']}; "
            f"graph requests {run['simulator']['graph_requests']}\n"
        )
    base = report.get("baseline")
    if base:
        n = cfg["n"]
        projected = base["seconds_per_mailbox"] * n
        ours = next((r["median_seconds"] for r in report["sizes"] if r["n"] == n), None)
        out(
            f"baseline (msgraph-sdk, one by one): {base['mailboxes']} mailboxes in {base['seconds']:.2f} s "
            f"({base['seconds_per_mailbox'] * 1000:.0f} ms each, {base['simulator']['graph_requests']} Graph "
            f"requests), extrapolated linearly to N={n}: {projected:.1f} s"
            + (f"; m365connect is {projected / ours:.0f} x faster\n" if ours else "\n")
        )
    plain = report.get("plain_api")
    if plain:
        c, b = plain["credentials"], plain["bare"]
        out(
            f"plain API, 32 connections: GET credentials {c['rps']:.0f} req/s (p50 {c['p50_ms']:.1f} ms, "
            f"p99 {c['p99_ms']:.1f} ms); bare FastAPI {b['rps']:.0f} req/s (p50 {b['p50_ms']:.1f} ms, "
            f"p99 {b['p99_ms']:.1f} ms); ratio {plain['ratio']:.0%}\n"
        )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=1000, help="the headline size (baseline, 0 ms, throttled)")
    parser.add_argument("--domains", type=int, default=20)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--database-url", help="postgresql+asyncpg://user@host:port/db (admin database)")
    parser.add_argument("--sizes", default="100,1000,5000")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--large-runs", type=int, default=1, help="runs for sizes above 1000")
    parser.add_argument("--baseline-sample", type=int, default=100)
    parser.add_argument("--load-seconds", type=float, default=5.0)
    parser.add_argument("--quick", action="store_true", help="sizes 100,1000, 1 run, small samples")
    parser.add_argument("--skip", default="", help="comma list of: baseline,plain,throttled,zero")
    parser.add_argument("--output", type=Path, help="results file (default bench/results/<stamp>.json)")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.runs, args.large_runs = f"100,{args.n}", 1, 1
        args.baseline_sample, args.load_seconds = 20, 2.0
    return args


def main() -> None:
    args = parse_args()
    sizes = sorted({int(s) for s in args.sizes.split(",")} | {args.n})
    skip = set(filter(None, args.skip.split(",")))
    started = datetime.now(UTC)
    report: dict[str, Any] = {
        "started_at": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "config": {
            "n": args.n,
            "domains": args.domains,
            "latency_ms": args.latency_ms,
            "database": "postgresql" if args.database_url else "sqlite",
            "runs": args.runs,
            "large_runs": args.large_runs,
            "cpus": os.cpu_count(),
            "simulator": "separate process (m365connect fake-microsoft)",
        },
        "sizes": [],
    }
    with tempfile.TemporaryDirectory(prefix="m365bench-") as tmp:
        workdir = Path(tmp)
        for n in sizes:
            with simulator(n, args.domains, workdir) as sim:
                runs = args.runs if n <= 1000 else args.large_runs
                sys.stderr.write(f"N={n}: {runs} run(s) at {args.latency_ms} ms\n")
                report["sizes"].append(
                    measure(sim, args, n, runs, latency_ms=args.latency_ms, throttle=False)
                )
                if n != args.n:
                    continue
                if "zero" not in skip:
                    sys.stderr.write(f"N={n}: 0 ms latency\n")
                    report["zero_latency"] = measure(sim, args, n, args.runs, latency_ms=0.0, throttle=False)
                if "throttled" not in skip:
                    sys.stderr.write(f"N={n}: throttled\n")
                    report["throttled"] = measure(sim, args, n, 1, latency_ms=args.latency_ms, throttle=True)
                if "baseline" not in skip:
                    sys.stderr.write(f"baseline: {args.baseline_sample} mailboxes\n")
                    report["baseline"] = baseline(sim, args, args.baseline_sample)
                if "plain" not in skip:
                    sys.stderr.write("plain API load\n")
                    report["plain_api"] = plain_api(sim, args, args.load_seconds, workdir)
    RESULTS.mkdir(exist_ok=True)
    output = args.output or RESULTS / f"bulk-{report['config']['database']}-{started:%Y%m%d-%H%M%S}.json"
    output.write_text(json.dumps(report, indent=2) + "\n")
    print_report(report)
    sys.stdout.write(f"\nresults: {output}\n")


if __name__ == "__main__":
    main()
