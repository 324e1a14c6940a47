"""Real child processes for tests and bench/: the `m365connect` command, always stopped afterwards."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx

EXECUTABLE = Path(sys.executable).parent / "m365connect"
START_TIMEOUT = 20.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def clean_env(**extra: str) -> dict[str, str]:
    """This machine's environment without any M365CONNECT_* variable, plus `extra`."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("M365CONNECT_")}
    return {**env, **extra}


class Children:
    """Processes started by one test; `stop_all` terminates (then kills) whatever still runs."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, args: list[str], *, cwd: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
        """Run `m365connect ARGS`, output to `log`."""
        assert EXECUTABLE.exists(), EXECUTABLE
        with log.open("wb") as output:
            child = subprocess.Popen(
                [str(EXECUTABLE), *args],
                cwd=cwd,
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
                preexec_fn=default_sigint,
            )
        self.started.append(child)
        return child

    def stop_all(self) -> None:
        """Terminate every child still running; kill those that linger."""
        stop(self.started)


def stop(
    children: Iterable[subprocess.Popen[Any]], *, signum: int = signal.SIGTERM, grace: float = 10.0
) -> None:
    """Send each child still running `signum` (default SIGTERM); kill those that linger past `grace` s."""
    for child in children:
        if child.poll() is None:
            child.send_signal(signum)
            try:
                child.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


def wait_until_healthy(
    child: subprocess.Popen[Any],
    base_url: str,
    *,
    log: Path | None = None,
    path: str = "/healthz",
    timeout: float = START_TIMEOUT,
) -> None:
    """Poll `base_url + path` until it answers 200 (bounded); fail with the child's log if it dies or stays
    silent."""
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=base_url, timeout=2) as http:
        while True:
            output = log.read_text() if log is not None and log.exists() else ""
            if child.poll() is not None:
                raise RuntimeError(f"process {child.pid} exited with {child.returncode}\n{output}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{base_url}{path} did not answer 200 within {timeout} s\n{output}")
            try:
                if http.get(path).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)


def default_sigint() -> None:
    """A child's `preexec_fn`: SIGINT at its default. A child of a shell's background job (without job
    control) inherits SIGINT ignored, and a test of Ctrl-C then waits for a process that never stops; a
    terminal's Ctrl-C is what the tests mean."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


ROOT = Path(__file__).resolve().parents[1]


def start_until_started(
    children: Children, args: list[str], *, env: dict[str, str], log: Path
) -> subprocess.Popen[bytes]:
    """Start a process (SIGINT at its default, in the repository) and wait until its work loop has started
    (`worker.started` in its log, which needs M365CONNECT_LOG_LEVEL=INFO)."""
    with log.open("wb") as output:
        child = subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT, preexec_fn=default_sigint
        )
    children.started.append(child)
    deadline = time.monotonic() + 30
    while "worker.started" not in log.read_text():
        assert child.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)
    return child
