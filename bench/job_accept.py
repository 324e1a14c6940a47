"""Benchmark of a bulk job's 202: POST /bulk with `Prefer: respond-async` of 1,000 and 100,000 items.

    .venv/bin/python bench/job_accept.py [--sizes 1000,100000] [--runs 3] [--database-url URL]
                                         [--source before=/tmp/old/src ...]

Each measurement is one job posted to a fresh `m365connect serve` (after a 10-item warm-up job), so that
memory freed by an earlier request does not hide what this one takes; sizes (and sources) alternate
within each run, so their ratios are side by side in one run. Per request: the time to the 202 (the body
sent, parsed, checked, hashed and stored with its items, the first chunks queued), the service's resident
memory just before it (sampled every 5 ms by another thread), the highest sample while it ran, and so
what the request added. The job is cancelled at once.

`--source NAME=DIR` adds a variant whose service runs the package found in DIR (PYTHONPATH; e.g. a
`git archive` of an older commit's `src`), measured in the same runs as the installed one ("current").

Prints its figures and writes them to bench/results/. Figures: docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
from bulk import BULK_PATH, RESULTS, simulator
from service_run import running_service

SAMPLE_SECONDS = 0.005


class RssSampler:
    """A thread that keeps the highest resident set size of a process since the last `reset`."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def now(self) -> int:
        return int(self.process.memory_info().rss)

    def reset(self) -> int:
        self.peak = self.now()
        return self.peak

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            self.peak = max(self.peak, self.now())


def job_body(n: int, credential_id: int, run: int) -> bytes:
    """n accounts with display names (addresses unknown to the simulator: the chunks find nothing)."""
    accounts = [
        {"mailbox_email": f"user{i}.run{run}@bench-jobs.example", "display_name": f"Bench User {i}"}
        for i in range(n)
    ]
    return json.dumps({"credential_id": credential_id, "accounts": accounts}).encode()


def one_job(client: httpx.Client, sampler: RssSampler, body: bytes) -> dict[str, float]:
    """POST the job, time its 202, sample memory; then cancel it."""
    before = sampler.reset()
    started = time.perf_counter()
    answer = client.post(
        BULK_PATH,
        content=body,
        headers={"Prefer": "respond-async", "Content-Type": "application/json"},
    )
    seconds = time.perf_counter() - started
    peak = sampler.peak
    if answer.status_code != 202:
        raise RuntimeError(f"job: {answer.status_code} {answer.text[:300]}")
    job_id = answer.json()["job_id"]
    client.delete(f"{BULK_PATH}/jobs/{job_id}").raise_for_status()
    return {
        "seconds": seconds,
        "body_mb": len(body) / 2**20,
        "rss_before_mb": before / 2**20,
        "rss_peak_mb": peak / 2**20,
        "added_mb": (peak - before) / 2**20,
    }


def summary(runs: list[dict[str, float]]) -> dict[str, float]:
    return {
        "runs": len(runs),
        "seconds_median": statistics.median(r["seconds"] for r in runs),
        "seconds_min": min(r["seconds"] for r in runs),
        "body_mb": runs[0]["body_mb"],
        "rss_before_mb_median": statistics.median(r["rss_before_mb"] for r in runs),
        "rss_peak_mb_max": max(r["rss_peak_mb"] for r in runs),
        "added_mb_median": statistics.median(r["added_mb"] for r in runs),
        "added_mb_max": max(r["added_mb"] for r in runs),
    }


def measure(
    sim_info: dict[str, Any], database_url: str | None, n: int, run: int, extra_env: dict[str, str]
) -> dict[str, float]:
    """One job of n items to a fresh service."""
    with (
        running_service(
            sim_info, database_url=database_url, max_accounts=1000, extra_env=extra_env
        ) as service,
        service.client(timeout=600) as client,
        RssSampler(service.child.pid) as sampler,
    ):
        one_job(client, sampler, job_body(10, service.credential_id, -1))  # warm-up
        return one_job(client, sampler, job_body(n, service.credential_id, run))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1000,100000")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--database-url", help="postgresql+asyncpg://user@host:port/db (admin database)")
    parser.add_argument("--source", action="append", default=[], help="NAME=DIR: another package source")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    variants: dict[str, dict[str, str]] = {"current": {}}
    for option in args.source:
        name, _, directory = option.partition("=")
        variants[name] = {"PYTHONPATH": str(Path(directory).resolve())}
    started = datetime.now(UTC)
    per: dict[str, dict[int, list[dict[str, float]]]] = {v: {n: [] for n in sizes} for v in variants}
    with tempfile.TemporaryDirectory(prefix="m365bench-") as tmp, simulator(10, 1, Path(tmp)) as sim:
        for run in range(args.runs):
            order = [(v, n) for v in variants for n in sizes]
            for variant, n in order if run % 2 == 0 else list(reversed(order)):
                figures = measure(sim.info, args.database_url, n, run, variants[variant])
                sys.stderr.write(f"run {run} {variant} N={n}: {json.dumps(figures)}\n")
                per[variant][n].append(figures)
    report: dict[str, Any] = {
        "started_at": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "config": {
            "database": "postgresql" if args.database_url else "sqlite",
            "cpus": os.cpu_count(),
            "runs": args.runs,
            "variants": {name: env.get("PYTHONPATH", "installed") for name, env in variants.items()},
        },
        "sizes": {v: {str(n): summary(runs) for n, runs in sized.items()} for v, sized in per.items()},
        "runs": {v: {str(n): runs for n, runs in sized.items()} for v, sized in per.items()},
    }
    if len(sizes) == 2:
        report["ratio_large_over_small"] = {}
        for variant, sized in report["sizes"].items():
            small, large = (sized[str(n)] for n in sorted(sizes))
            report["ratio_large_over_small"][variant] = {
                "items": max(sizes) / min(sizes),
                "seconds": large["seconds_median"] / small["seconds_median"],
                "added_mb": large["added_mb_median"] / max(small["added_mb_median"], 0.01),
            }
    sys.stdout.write(json.dumps({k: v for k, v in report.items() if k != "runs"}, indent=2) + "\n")
    RESULTS.mkdir(exist_ok=True)
    output = args.output or RESULTS / (
        f"job-accept-{report['config']['database']}-{started.strftime('%Y%m%d-%H%M%S')}.json"
    )
    output.write_text(json.dumps(report, indent=2) + "\n")
    sys.stderr.write(f"written: {output}\n")


if __name__ == "__main__":
    main()
