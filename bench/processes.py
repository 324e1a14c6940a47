"""Child processes of the benchmark (simulator, service, bare app), all on 127.0.0.1, always stopped."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

try:  # psutil is in the bench extra; without it (a test run on '.[dev]') /proc gives the same figures
    import psutil
except ImportError:  # pragma: no cover - depends on the environment
    psutil = None

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository, for tests.processes
from tests.processes import free_port as free_port  # re-exported for the bench scripts
from tests.processes import stop, wait_until_healthy

ROOT = Path(__file__).resolve().parent.parent
CLI = str(ROOT / ".venv" / "bin" / "m365connect")
PYTHON = sys.executable
START_TIMEOUT = 60.0


@dataclass
class Child:
    """A child process, stopped (and its output file closed) by `stop()`."""

    proc: subprocess.Popen[bytes]
    log: IO[bytes] | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def cpu_seconds(self) -> float:
        """User + system CPU time used so far."""
        if psutil is None:  # fields 14 and 15 of /proc/PID/stat (utime, stime) in clock ticks
            fields = Path(f"/proc/{self.pid}/stat").read_text().rpartition(")")[2].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        times = psutil.Process(self.pid).cpu_times()
        return float(times.user + times.system)

    def peak_rss_mb(self) -> float:
        """Peak resident set size (VmHWM), MiB."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        if psutil is None:
            raise RuntimeError(f"no VmHWM in /proc/{self.pid}/status")
        return float(psutil.Process(self.pid).memory_info().rss) / 2**20

    def stop(self) -> None:
        """SIGINT, then SIGKILL after 10 s (300 s under M365BENCH_PROFILE: the profiler writes its report
        on the way out, which takes minutes after a long run); idempotent."""
        stop([self.proc], signum=signal.SIGINT, grace=300.0 if os.environ.get("M365BENCH_PROFILE") else 10.0)
        if self.log is not None:
            self.log.close()


def start_simulator(scenario_path: Path) -> Child:
    """`m365connect fake-microsoft` on free ports; returns once it printed where it listens."""
    proc = subprocess.Popen(
        [CLI, "fake-microsoft", "--scenario", str(scenario_path), "--port", "0", "--dns-port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    child = Child(proc)
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + START_TIMEOUT
        text = ""
        while "Press Ctrl-C" not in text:
            line = proc.stdout.readline().decode()
            if not line or time.monotonic() > deadline:
                raise RuntimeError(f"the simulator did not start:\n{text}")
            text += line
        base = re.search(r"base URL \(login and Graph\):\s+(\S+)", text)
        ca = re.search(r"CA certificate:\s+(\S+)", text)
        dns = re.search(r"DNS \(UDP and TCP\):\s+(\S+)", text)
        if not (base and ca and dns):
            raise RuntimeError(f"unexpected simulator output:\n{text}")
        child.info = {"base_url": base[1], "ca_path": ca[1], "dns": dns[1]}
    except BaseException:
        child.stop()
        raise
    return child


def start_service(env: dict[str, str], port: int, log_path: Path) -> Child:
    """`m365connect serve --port P` (migrates, then serves); output to `log_path`."""
    log = log_path.open("wb")
    command = [CLI, "serve", "--port", str(port)]
    profile = os.environ.get("M365BENCH_PROFILE")  # a directory: one pyinstrument report per service
    if profile:
        # M365BENCH_PROFILE_RENDERER=pstats writes a file for `python -m pstats` (flat and cumulative times);
        # =cprofile runs the service under cProfile instead of pyinstrument's sampler (slower, exact counts).
        renderer = os.environ.get("M365BENCH_PROFILE_RENDERER", "text")
        Path(profile).mkdir(parents=True, exist_ok=True)
        report = Path(profile) / f"service-{port}.{'txt' if renderer == 'text' else renderer}"
        if renderer == "cprofile":  # deterministic: exact call counts and self times, for `python -m pstats`
            report = report.with_suffix(".cprofile")
            command = [PYTHON, "-m", "cProfile", "-o", str(report), *command]
        else:
            options = ["--show-all"] if renderer == "text" else []
            command = [PYTHON, "-m", "pyinstrument", "-r", renderer, *options, "-o", str(report), *command]
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    child = Child(proc, log)
    try:
        wait_until_healthy(proc, f"http://127.0.0.1:{port}", timeout=START_TIMEOUT)
    except BaseException:
        child.stop()
        raise
    return child


def start_bare_app(port: int, log_path: Path) -> Child:
    """The constant-JSON FastAPI app, on the same uvicorn settings as `m365connect serve`."""
    log = log_path.open("wb")
    proc = subprocess.Popen(
        [PYTHON, str(ROOT / "bench" / "bare_app.py"), str(port)], stdout=log, stderr=subprocess.STDOUT
    )
    child = Child(proc, log)
    try:
        wait_until_healthy(proc, f"http://127.0.0.1:{port}", path="/bare", timeout=START_TIMEOUT)
    except BaseException:
        child.stop()
        raise
    return child


def run_cli(args: list[str], env: dict[str, str]) -> str:
    """Run an m365connect command; its stdout."""
    done = subprocess.run([CLI, *args], env=env, capture_output=True, timeout=120, check=True)
    return done.stdout.decode()
