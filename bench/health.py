"""Background verification on one service process (issue 11, item 8): mailboxes verified per second,
CPU per check, Graph requests per mailbox, the interval that sustains, a bulk request's latency idle vs
during verification, and 429s per 1000 requests with the simulator's Graph budgets on.

    .venv/bin/python bench/health.py [--sizes 10000,20000] [--tenants 50] [--latency-ms 50]
                                     [--bulk 100] [--database-url URL] [--quick]

Mailboxes are inserted straight into the database (as a migration of existing data would be), spread
over `--tenants` tenants with one credential each (created over HTTP); the simulator's scenario holds the
matching users. One real `m365connect serve` process runs the real job kinds on its work engine. A run
makes every mailbox due at once and times the drain. Figures and method: docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import scenario
from bulk import BULK_PATH, RESULTS, Simulator
from service_run import CREDENTIALS_PATH, fresh_database, service_env
from sqlalchemy import func, select, update

import processes
from m365connect.accounts.models import Account
from m365connect.db.engine import create_engine
from m365connect.mailboxes.models import Mailbox

NAMESPACE = uuid.UUID("5d0c7a3e-8f1b-4b7e-9a55-0c1d2e3f4a5b")
SECRET = "Hq8Q~bench.Health.Secret_4k2Lm9Xq7Rt"  # a simulator test value, not a real secret
FAR = timedelta(days=30)


def tenant_id(t: int) -> str:
    return str(uuid.uuid5(NAMESPACE, f"tenant-{t}"))


def client_id(t: int) -> str:
    return str(uuid.uuid5(NAMESPACE, f"app-{t}"))


def user_id(t: int, i: int) -> str:
    return str(uuid.uuid5(NAMESPACE, f"user-{t}-{i}"))


def address(t: int, i: int) -> str:
    return f"user{i}@{scenario.domain(t)}"


class ScenarioSimulator(Simulator):
    """bulk.py's simulator driver, started on a scenario file of our own."""

    def __init__(self, path: Path) -> None:
        self.child = processes.start_simulator(path)
        self.info = self.child.info
        self.admin = httpx.Client(base_url=self.info["base_url"], verify=self.info["ca_path"], timeout=30)


def build_scenario(*, tenants: int, per_tenant: int, extra: int) -> dict[str, Any]:
    """`tenants` tenants, one app each (its own client id), `per_tenant` users (+ `extra` in tenant 0
    for the bulk requests), one domain each with correct SPF and DKIM."""
    built = scenario.build(users=0, domains=tenants)
    built["tenants"] = [
        {
            "id": tenant_id(t),
            "domains": [scenario.domain(t)],
            "apps": [
                {
                    "client_id": client_id(t),
                    "name": f"bench app {t}",
                    "roles": scenario.ROLES,
                    "secrets": [{"value": SECRET, "expires_at": "2099-12-31T23:59:59Z"}],
                }
            ],
            "users": [
                {
                    "user_principal_name": address(t, i),
                    "id": user_id(t, i),
                    "display_name": f"User {t}-{i}",
                    "proxy_addresses": [f"SMTP:{address(t, i)}"],
                }
                for i in range(per_tenant + (extra if t == 0 else 0))
            ],
        }
        for t in range(tenants)
    ]
    return built


async def insert_mailboxes(url: str, credentials: list[int], per_tenant: int) -> None:
    """The connected mailboxes, straight into the database, not due for a month (idle service)."""
    engine = create_engine(url)
    now = datetime.now(UTC)
    try:
        async with engine.begin() as connection:
            account_id = await connection.scalar(select(Account.id).where(Account.name == "bench"))
            rows = [
                {
                    "account_id": account_id,
                    "credential_id": credential,
                    "email": address(t, i),
                    "microsoft_user_id": user_id(t, i),
                    "status": "ACTIVE",
                    "spf_correct": True,
                    "dkim_correct": True,
                    "connected_at": now,
                    "health_state": "OK",
                    "next_check_at": now + FAR,
                }
                for t, credential in enumerate(credentials)
                for i in range(per_tenant)
            ]
            for start in range(0, len(rows), 5000):
                await connection.execute(Mailbox.__table__.insert(), rows[start : start + 5000])
    finally:
        await engine.dispose()


async def make_due(url: str, n: int) -> datetime:
    """The `n` inserted mailboxes (ids 1..n; the bulk requests' come after) due now; the moment."""
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            since = datetime.now(UTC)
            await connection.execute(
                update(Mailbox).where(Mailbox.id <= n).values(next_check_at=since - timedelta(seconds=1))
            )
        return since
    finally:
        await engine.dispose()


async def checked_since(url: str, since: datetime, n: int) -> int:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            return int(
                await connection.scalar(
                    select(func.count())
                    .select_from(Mailbox)
                    .where(Mailbox.id <= n, Mailbox.health_checked_at >= since)
                )
                or 0
            )
    finally:
        await engine.dispose()


def bulk_request(client: httpx.Client, credential: int, first: int, size: int) -> float:
    """One bulk request of `size` fresh users of tenant 0; its seconds (every account must connect)."""
    accounts = [{"mailbox_email": address(0, first + i), "display_name": "Bulk"} for i in range(size)]
    started = time.perf_counter()
    response = client.post(BULK_PATH, json={"credential_id": credential, "accounts": accounts})
    seconds = time.perf_counter() - started
    connected = sum(1 for item in response.json() if item.get("success")) if response.is_success else 0
    if connected != size:
        raise RuntimeError(f"bulk: {response.status_code}, {connected}/{size} connected")
    return seconds


class Bulks:
    """Bulk requests of tenant 0's spare users, each on users never connected before."""

    def __init__(
        self, client: httpx.Client, credential: int, per_tenant: int, size: int, service: processes.Child
    ) -> None:
        self.client, self.credential, self.size, self.next = client, credential, size, per_tenant
        self.service = service
        self.idle_cpu: list[float] = []  # service CPU seconds of each bulk timed on an idle service

    def one(self) -> float:
        first, self.next = self.next, self.next + self.size
        return bulk_request(self.client, self.credential, first, self.size)

    def idle(self) -> float:
        cpu = self.service.cpu_seconds()
        seconds = self.one()
        self.idle_cpu.append(self.service.cpu_seconds() - cpu)
        return seconds


def verify_all(
    url: str, n: int, service: processes.Child, sim: Simulator, *, bulks: Bulks | None, timeout: float
) -> dict[str, Any]:
    """Make every mailbox due and wait for the drain; rate, CPU, Graph counts (and bulks meanwhile)."""
    sim.reset()
    cpu_before = service.cpu_seconds()
    since = asyncio.run(make_due(url, n))
    started = time.perf_counter()
    marks: dict[float, float] = {}  # fraction of n done -> seconds
    during: list[float] = []
    bulk_thread = None
    done = 0
    while done < n and time.perf_counter() - started < timeout:
        time.sleep(0.5)
        done = asyncio.run(checked_since(url, since, n))
        elapsed = time.perf_counter() - started
        for fraction in (0.1, 0.5, 0.9, 1.0):
            if done >= fraction * n and fraction not in marks:
                marks[fraction] = elapsed
        if bulks is not None and bulk_thread is None and done >= 0.1 * n:
            bulk_thread = threading.Thread(target=lambda: during.extend(bulks.one() for _ in range(2)))
            bulk_thread.start()
    seconds = time.perf_counter() - started
    if bulk_thread is not None:
        bulk_thread.join()
    cpu = service.cpu_seconds() - cpu_before
    if bulks is not None and during:  # the bulks' own CPU (as measured idle) is not the checks'
        cpu -= len(during) * median(bulks.idle_cpu or [0.0])
    stats = sim.stats()
    if bulks is not None:  # the bulks' own Graph calls (bulk.py's counts: 2 items a mailbox, 20 a batch)
        stats["batch_items"] -= len(during) * bulks.size * 2
        stats["graph_requests"] -= len(during) * math.ceil(bulks.size / 20) * 2
    steady = (marks[0.9] - marks[0.1]) if 0.1 in marks and 0.9 in marks else 0.0
    return {
        "n": n,
        "checked": done,
        "seconds": seconds,
        "per_second_overall": done / seconds,
        "per_second_10_to_90": 0.8 * n / steady if steady else None,
        "marks": {str(k): v for k, v in marks.items()},
        "service_cpu_seconds": cpu,
        "cpu_ms_per_check": cpu / done * 1000 if done else None,
        "simulator": stats,
        "graph_requests_per_mailbox": stats["graph_requests"] / done if done else None,
        "batch_items_per_mailbox": stats["batch_items"] / done if done else None,
        "bulk_during_seconds": during,
    }


def run_size(sim: Simulator, args: argparse.Namespace, n: int, workdir: Path) -> dict[str, Any]:
    per_tenant = n // args.tenants
    n = per_tenant * args.tenants
    result: dict[str, Any] = {"n": n, "per_tenant": per_tenant}
    with fresh_database(args.database_url, workdir) as url:
        key = processes.run_cli(["encryption", "generate-key"], dict(os.environ)).strip().splitlines()[-1]
        env = service_env(sim.info, url, max(args.bulk, 1000), key)
        env["M365CONNECT_HEALTH_MAILBOX_INTERVAL"] = str(args.interval)
        api_key = processes.run_cli(["api-keys", "create", "--account", "bench"], env).splitlines()[-1]
        port = processes.free_port()
        child = processes.start_service(env, port, workdir / f"service-{n}.log")
        try:
            headers = {"x-api-key": api_key.strip()}
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=600) as client:
                credentials = []
                for t in range(args.tenants):
                    body = {
                        "tenant_id": tenant_id(t),
                        "client_id": client_id(t),
                        "client_secret": SECRET,
                        "secret_expires_at": "2099-12-31T23:59:59Z",
                        "name": f"tenant {t}",
                    }
                    created = client.post(CREDENTIALS_PATH, json=body)
                    created.raise_for_status()
                    credentials.append(int(created.json()["credential_id"]))
                asyncio.run(insert_mailboxes(url, credentials, per_tenant))
                sim.faults(latency_ms=args.latency_ms)
                bulks = Bulks(client, credentials[0], per_tenant, args.bulk, child)
                idle = [bulks.idle() for _ in range(2)]
                sys.stderr.write(f"N={n}: verifying (budgets off)\n")
                result["plain"] = verify_all(url, n, child, sim, bulks=bulks, timeout=args.timeout)
                sys.stderr.write(f"{json.dumps(result['plain'])}\n")
                idle += [bulks.idle() for _ in range(2)]
                result["bulk_idle_seconds"] = idle
                if not args.skip_budgets:
                    sys.stderr.write(f"N={n}: verifying (budgets on)\n")
                    sim.admin.put("/_simulator/budgets", json={"enabled": True}).raise_for_status()
                    sim.admin.post("/_simulator/budgets/reset").raise_for_status()
                    budgeted = verify_all(url, n, child, sim, bulks=None, timeout=args.budget_seconds)
                    budgeted["budgets"] = sim.admin.get("/_simulator/budgets/stats").json()
                    sim.admin.put("/_simulator/budgets", json={"enabled": False}).raise_for_status()
                    result["budgets"] = budgeted
            result["service_peak_rss_mb"] = child.peak_rss_mb()
        finally:
            child.stop()
    return result


def median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def print_report(report: dict[str, Any]) -> None:
    out = sys.stdout.write
    cfg = report["config"]
    out(
        f"\nm365connect background verification  {report['started_at']}  database={cfg['database']}  "
        f"latency={cfg['latency_ms']} ms  tenants={cfg['tenants']}  cpus={os.cpu_count()} (shared)\n\n"
    )
    out(
        f"{'N':>7} {'checks/s':>9} {'10-90%/s':>9} {'cpu ms/chk':>11} {'graph req/mbx':>14} "
        f"{'items/mbx':>10} {'min interval s':>15} {'bulk idle s':>12} {'bulk busy s':>12} {'ratio':>6}\n"
    )
    for row in report["sizes"]:
        plain = row["plain"]
        rate = plain["per_second_10_to_90"] or plain["per_second_overall"]
        idle, busy = median(row["bulk_idle_seconds"]), median(plain["bulk_during_seconds"] or [0.0])
        out(
            f"{row['n']:>7} {plain['per_second_overall']:>9.0f} {rate:>9.0f} "
            f"{plain['cpu_ms_per_check']:>11.2f} {plain['graph_requests_per_mailbox']:>14.3f} "
            f"{plain['batch_items_per_mailbox']:>10.2f} {row['n'] / rate:>15.0f} {idle:>12.2f} "
            f"{busy:>12.2f} {busy / idle:>6.2f}\n"
        )
    for row in report["sizes"]:
        rate = row["plain"]["per_second_10_to_90"] or row["plain"]["per_second_overall"]
        out(
            f"N={row['n']}: 100,000 mailboxes at {rate:.0f}/s take {100_000 / rate:.0f} s "
            f"({'within' if 100_000 / rate <= 3600 else 'NOT within'} an hour on one process)\n"
        )
        budgeted = row.get("budgets")
        if budgeted:
            sim, meter = budgeted["simulator"], budgeted["budgets"]
            out(
                f"  budgets on: {budgeted['checked']}/{row['n']} checked in {budgeted['seconds']:.0f} s "
                f"({budgeted['per_second_overall']:.0f}/s); 429s {sim['throttled']} = "
                f"{1000 * sim['throttled'] / max(sim['batch_items'], 1):.1f} per 1000 Graph requests "
                f"(each $batch item counts, as Microsoft meters them); by budget {meter['throttled']}\n"
            )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="10000,20000")
    parser.add_argument("--tenants", type=int, default=50)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--bulk", type=int, default=100, help="accounts per timed bulk request")
    parser.add_argument("--interval", type=int, default=86400, help="M365CONNECT_HEALTH_MAILBOX_INTERVAL")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per drain at most")
    parser.add_argument("--database-url", help="postgresql+asyncpg://user@host:port/db (admin database)")
    parser.add_argument("--skip-budgets", action="store_true")
    parser.add_argument(
        "--budget-seconds",
        type=float,
        default=60.0,
        help="the budgets-on run is timed for this long (a check that met 429s is retried 30 s later)",
    )
    parser.add_argument("--quick", action="store_true", help="N = 1000 and 2000 (under a minute)")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.timeout, args.budget_seconds = "1000,2000", 60.0, 10.0
    return args


def main() -> None:
    args = parse_args()
    sizes = sorted({int(s) for s in args.sizes.split(",")})
    started = datetime.now(UTC)
    report: dict[str, Any] = {
        "started_at": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "config": {
            "sizes": sizes,
            "tenants": args.tenants,
            "latency_ms": args.latency_ms,
            "bulk": args.bulk,
            "database": "postgresql" if args.database_url else "sqlite",
            "cpus": os.cpu_count(),
            "simulator": "separate process (m365connect fake-microsoft)",
        },
        "sizes": [],
    }
    workdir = Path(tempfile.mkdtemp(prefix="m365bench-health-"))
    try:
        extra = args.bulk * 6  # 2 idle bulks before, 2 during verification, 2 idle after
        largest = max(sizes)
        path = workdir / "scenario.json"
        per_tenant = largest // args.tenants
        path.write_text(json.dumps(build_scenario(tenants=args.tenants, per_tenant=per_tenant, extra=extra)))
        sim = ScenarioSimulator(path)
        try:
            for n in sizes:
                report["sizes"].append(run_size(sim, args, n, workdir))
        finally:
            sim.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    RESULTS.mkdir(exist_ok=True)
    output = args.output or RESULTS / f"health-{report['config']['database']}-{started:%Y%m%d-%H%M%S}.json"
    output.write_text(json.dumps(report, indent=2) + "\n")
    print_report(report)
    sys.stdout.write(f"\nresults: {output}\n")


if __name__ == "__main__":
    main()
