"""bench/jobs.py cannot rot: its budget floor, and a tiny run end to end (40 mailboxes in 2 tenants)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.fixture
def jobs_bench(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """bench/jobs.py as a module (the bench scripts import each other by file name)."""
    monkeypatch.syspath_prepend(str(BENCH))
    import jobs  # type: ignore[import-not-found]

    module: ModuleType = jobs
    return module


def test_floor_follows_the_budgets_and_the_layout(jobs_bench: ModuleType) -> None:
    knobs = jobs_bench.knob_defaults()
    floor = jobs_bench.budget_floor
    per_tenant = [(f"app-{t}", 2000, 2000) for t in range(50)]
    one_app = [("app", 2000, 2000) for _ in range(50)]
    # 4 Outlook calls in flight per app, 50 ms each, after one lookup round trip
    assert floor(knobs, per_tenant, 0.05) == pytest.approx(0.05 + 500 * 0.05)
    assert floor(knobs, one_app, 0.05) == pytest.approx(0.05 + 25_000 * 0.05)
    # the simulator's own model: a $batch of 20 holds the app's 4 slots for one latency
    assert floor(knobs, per_tenant, 0.05, per_batch=True) == pytest.approx(0.05 + 100 * 0.05)
    # directory-bound: 10,000 lookups in an L tenant (8000 units per 10 s, a full bucket to start)
    wide = {**knobs, "outlook_concurrency": 1000}
    assert floor(wide, [("app", 10_000, 10_000)], 0.05) == pytest.approx(0.05 + 2000 / 800)
    # tenant sizes: S under 50 users (3500 units), M to 500 (5000)
    assert floor(wide, [("app", 3600, 40)], 0.0) == pytest.approx(100 / 350)
    assert floor(wide, [("app", 5100, 500)], 0.0) == pytest.approx(100 / 500)
    with pytest.raises(ValueError, match="'app' reading"):
        floor({**knobs, "outlook_concurrency_scope": "mailbox"}, per_tenant, 0.05)


def test_a_tiny_run_finishes_and_reports_every_figure(tmp_path: Path) -> None:
    output = tmp_path / "jobs.json"
    tiny = ["--mailboxes", "40", "--tenants", "2", "--small-runs", "1", "--sync-size", "20"]
    fast = ["--latency-ms", "5", "--poll", "0.2", "--timeout", "60", "--output", str(output)]
    done = subprocess.run(
        [sys.executable, str(BENCH / "jobs.py"), *tiny, *fast],
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    report: dict[str, Any] = json.loads(output.read_text())
    jobs = report["result"]["jobs"]
    counts = (jobs["total"], jobs["processed"], jobs["connected"], jobs["statuses"])
    assert counts == (40, 40, 40, {"DONE": 2})
    assert jobs["seconds"] > 0
    assert jobs["graph"]["requests"] >= 80  # a lookup and a probe per mailbox
    assert report["floors"]["jobs"] == pytest.approx(0.005 + 5 * 0.005)
    assert len(jobs["small_during"]) == 1
    assert jobs["small_during"][0]["connected"] == 10
    assert [r["connected"] for r in report["result"]["small_idle"]] == [10]
    assert report["result"]["sync_off"]["connected"] == 20
    assert report["result"]["peak_rss_mb"][0] > 0
    # Each app's learnt Outlook limit at the end, read from the pacer's budgets: the 2 job apps and the
    # other account's (a refused probe keeps the limit at 4; a halving would show here).
    assert sum(report["result"]["outlook_limits"].values()) == 3
    assert "apps per learnt Outlook limit" in done.stdout.decode()
    assert "time to finish" in done.stdout.decode()


def test_a_run_without_idle_requests_is_refused_before_it_starts(jobs_bench: ModuleType) -> None:
    """The table sets the 10-item request during the jobs against it idle: with --small-runs 0 the script
    ran the whole import and then failed printing it."""
    with pytest.raises(SystemExit) as exited:
        jobs_bench.parse_args(["--small-runs", "0"])
    assert exited.value.code == 2
    assert jobs_bench.parse_args(["--small-runs", "1"]).small_runs == 1
