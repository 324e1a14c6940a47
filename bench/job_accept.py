"""Benchmark of a bulk job's 202: POST /bulk with `Prefer: respond-async` of 1,000 and 100,000 items.

    .venv/bin/python bench/job_accept.py [--sizes 1000,100000] [--runs 3] [--database-url URL]

Both sizes go, interleaved, to ONE `m365connect serve` (so their ratios are side by side in one run):
after a warm-up job, each run posts one job of each size, in alternating order. Per request: the time to
the 202 (the body sent, parsed, checked, hashed and stored with its items, the first chunks queued), the
service's resident memory just before it (sampled every 5 ms by another thread), the highest sample while
it ran, and so what the request added. Each job is cancelled at once so that its chunks (whose addresses
the simulator does not know) do almost nothing while the next request is measured.

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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1000,100000")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--database-url", help="postgresql+asyncpg://user@host:port/db (admin database)")
    parser.add_argument("--label", default="", help="a word for the results file name (before, after)")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    started = datetime.now(UTC)
    per_size: dict[int, list[dict[str, float]]] = {n: [] for n in sizes}
    with tempfile.TemporaryDirectory(prefix="m365bench-") as tmp, simulator(10, 1, Path(tmp)) as sim:
        with running_service(sim.info, database_url=args.database_url, max_accounts=1000) as service:
            with service.client(timeout=600) as client, RssSampler(service.child.pid) as sampler:
                one_job(client, sampler, job_body(1000, service.credential_id, -1))  # warm-up
                for run in range(args.runs):
                    order = sizes if run % 2 == 0 else list(reversed(sizes))
                    for n in order:
                        body = job_body(n, service.credential_id, run)
                        figures = one_job(client, sampler, body)
                        sys.stderr.write(f"run {run} N={n}: {json.dumps(figures)}\n")
                        per_size[n].append(figures)
                service_peak = service.child.peak_rss_mb()
    report: dict[str, Any] = {
        "started_at": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "config": {
            "database": "postgresql" if args.database_url else "sqlite",
            "cpus": os.cpu_count(),
            "runs": args.runs,
            "label": args.label,
        },
        "sizes": {str(n): summary(runs) for n, runs in per_size.items()},
        "service_peak_rss_mb": service_peak,
        "runs": {str(n): runs for n, runs in per_size.items()},
    }
    if len(sizes) == 2:
        small, large = (report["sizes"][str(n)] for n in sorted(sizes))
        report["ratio_large_over_small"] = {
            "items": max(sizes) / min(sizes),
            "seconds": large["seconds_median"] / small["seconds_median"],
            "added_mb": large["added_mb_median"] / max(small["added_mb_median"], 0.01),
        }
    print(json.dumps({k: v for k, v in report.items() if k != "runs"}, indent=2))
    RESULTS.mkdir(exist_ok=True)
    label = f"-{args.label}" if args.label else ""
    output = args.output or RESULTS / (
        f"job-accept-{report['config']['database']}{label}-{started.strftime('%Y%m%d-%H%M%S')}.json"
    )
    output.write_text(json.dumps(report, indent=2) + "\n")
    sys.stderr.write(f"written: {output}\n")


if __name__ == "__main__":
    main()
