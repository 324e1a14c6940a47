"""FakeMicrosoft: the simulator's HTTPS server (uvicorn on its own thread and loop) plus its DNS server."""

from __future__ import annotations

import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

from m365connect.simulator import tenant_changes
from m365connect.simulator.app import create_app
from m365connect.simulator.budget_meters import BudgetMeter
from m365connect.simulator.budgets import Budgets
from m365connect.simulator.certs import issue_certificates
from m365connect.simulator.directory import Directory
from m365connect.simulator.dns import DnsServer
from m365connect.simulator.faults import Faults, Stats
from m365connect.simulator.scenario import Scenario, load_scenario
from m365connect.simulator.state import SimulatorState
from m365connect.simulator.threaded import ThreadedServer, bind
from m365connect.simulator.tokens import TokenSigner

_START_TIMEOUT_SECONDS = 10.0


class FakeMicrosoft:
    """Microsoft's identity platform, Graph and DNS for one scenario, on 127.0.0.1 with a private CA."""

    def __init__(
        self,
        scenario: Scenario | str | Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        dns_port: int = 0,
        state_dir: str | Path | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        loaded = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
        self._host, self._port, self._dns_port = host, port, dns_port
        self._state_dir = Path(state_dir) if state_dir is not None else None
        self._state = SimulatorState.from_scenario(loaded, clock=clock)
        self._tempdir: tempfile.TemporaryDirectory[str] | None = None
        self._dns: DnsServer | None = None
        self._server: ThreadedServer | None = None
        self.base_url = ""
        self.ca_path = Path()

    def change_directory(self, scenario: Scenario) -> None:
        """Swap tenants, apps and users at runtime (an admin revokes a secret, disables an app, ...).

        DNS zones, faults and counters stay as they are; the next request sees the new directory.
        """
        self._state.directory = Directory(scenario)
        self._state.scenario = scenario

    @property
    def scenario(self) -> Scenario:
        """The scenario served now (changed by `change_directory`, the `change_*` methods and the admin
        API's PATCH routes)."""
        return self._state.scenario

    def change_user(self, tenant: str, user: str, **changes: Any) -> None:
        """An admin changes a user now, e.g. `change_user("contoso.com", "jim@contoso.com",
        account_enabled=False)`, `assigned_licenses=[]` (licence removed: no Exchange mailbox)."""
        self.change_directory(tenant_changes.change_user(self.scenario, tenant, user, changes))

    def change_app(self, tenant: str, client_id: str, **changes: Any) -> None:
        """An admin changes an app now: `enabled=False`, `roles=[]` (consent removed), `secrets=[...]`."""
        self.change_directory(tenant_changes.change_app(self.scenario, tenant, client_id, changes))

    def change_tenant(self, tenant: str, **changes: Any) -> None:
        """An admin changes `groups` or `exchange_role_assignments` now (RBAC scopes)."""
        self.change_directory(tenant_changes.change_tenant(self.scenario, tenant, changes))

    @property
    def faults(self) -> Faults:
        """The live fault knobs; changes apply to the next request."""
        return self._state.faults

    @property
    def budgets(self) -> Budgets:
        """The live budget knobs (`enabled` false by default); changes apply to the next request."""
        return self._state.meter.budgets

    @property
    def budget_meter(self) -> BudgetMeter:
        """The budgets' meters and counters (`snapshot()`, `reset()`)."""
        return self._state.meter

    @property
    def stats(self) -> Stats:
        """The live request counters."""
        return self._state.stats

    @property
    def sent_mail(self) -> list[dict[str, Any]]:
        """Messages accepted by sendMail so far (the same records as GET /_simulator/sent-mail)."""
        return self._state.sent_mail

    @property
    def token_signer(self) -> TokenSigner:
        """The key that signs and verifies access tokens (for tests that hand-make expired tokens)."""
        return self._state.signer

    @property
    def dns_port(self) -> int:
        """The DNS server's port (UDP and TCP)."""
        if self._dns is None:
            raise RuntimeError("FakeMicrosoft is not started")
        return self._dns.port

    def start(self) -> None:
        """Start DNS and HTTPS; return once both accept connections."""
        if self._server is not None:
            raise RuntimeError("FakeMicrosoft is already started")
        try:
            self._start_dns()
            self._start_https()
        except BaseException:
            self.stop()
            raise

    def _start_dns(self) -> None:
        dns = self.scenario.dns
        self._dns = DnsServer(dns.zones, servfail=dns.servfail, host=self._host, port=self._dns_port)
        self._dns.start()
        running = self._dns
        self._state.stats.dns_source = lambda: running.queries

    def _start_https(self) -> None:
        directory = self._state_dir
        if directory is None:
            self._tempdir = tempfile.TemporaryDirectory(prefix="m365connect-simulator-")
            directory = Path(self._tempdir.name)
        certs = issue_certificates(directory, [self._host])
        listener = bind(self._host, self._port, what="HTTPS")
        self._server = ThreadedServer(
            create_app(self._state),
            listener,
            name="fake-microsoft",
            ssl_certfile=str(certs.cert_path),
            ssl_keyfile=str(certs.key_path),
            lifespan="off",
            http="h11",
        )
        self._server.start(timeout=_START_TIMEOUT_SECONDS)
        host = f"[{self._host}]" if ":" in self._host else self._host
        self.base_url = f"https://{host}:{self._server.port}"
        self.ca_path = certs.ca_path

    def stop(self) -> None:
        """Stop HTTPS and DNS, join their threads and remove the temporary state directory."""
        if self._server is not None:
            self._server.stop()
        if self._dns is not None:
            self._dns.stop()
        if self._tempdir is not None:
            self._tempdir.cleanup()
        self._server = self._dns = self._tempdir = None

    def __enter__(self) -> FakeMicrosoft:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


@contextmanager
def sigterm_as_ctrl_c() -> Iterator[None]:
    """Let SIGTERM (kill, systemd, docker stop) unwind like Ctrl-C, so that `with` blocks run their exits
    and the temporary folder with the private keys is removed; the default action would end the process
    on the spot. Only the main thread can install a handler; elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def serve_forever(
    scenario_path: str | Path, *, host: str = "127.0.0.1", port: int = 8443, dns_port: int = 5353
) -> None:
    """Run the simulator for the CLI: print where it listens, then serve until Ctrl-C or SIGTERM."""
    with sigterm_as_ctrl_c():
        try:
            with FakeMicrosoft(load_scenario(scenario_path), host=host, port=port, dns_port=dns_port) as fake:
                _print_where(fake, scenario_path, f"{host}:{fake.dns_port}")
                while True:
                    time.sleep(1.0)
        except KeyboardInterrupt:
            pass
    sys.stdout.write("stopped\n")
    sys.stdout.flush()


def _print_where(fake: FakeMicrosoft, scenario_path: str | Path, dns: str) -> None:
    sys.stdout.write(
        f"Microsoft simulator for {scenario_path}\n"
        f"  base URL (login and Graph): {fake.base_url}\n"
        f"  CA certificate:             {fake.ca_path}\n"
        f"  DNS (UDP and TCP):          {dns}\n"
        f"For m365connect: M365CONNECT_LOGIN_URL={fake.base_url} M365CONNECT_GRAPH_URL={fake.base_url} "
        f"M365CONNECT_CA_BUNDLE={fake.ca_path} M365CONNECT_DNS_NAMESERVERS={dns}\n"
        "Press Ctrl-C to stop.\n"
    )
    sys.stdout.flush()
