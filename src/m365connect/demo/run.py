"""The demo: simulator + service on a temporary SQLite database; a credential and a bulk request per
tenant of the example (one of them GCC High), then today's tenant (demo/today.py) on a second account,
then a mailbox that fails and recovers, heard by a local webhook receiver (demo/health.py), then the
commands to try against the still-running service until Ctrl-C."""

from __future__ import annotations

import json
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.rule import Rule

from m365connect.client import ItemResult, ServiceClient, report
from m365connect.crypto import generate_key
from m365connect.demo.health import show_failing_and_recovered
from m365connect.demo.receiver import Receiver
from m365connect.demo.scenario import (
    TenantPlan,
    load_packaged_scenario,
    packaged_certificate_path,
    plan,
    todays_tenant,
)
from m365connect.demo.service import DEMO_ACCOUNT, TODAY_ACCOUNT, ServiceThread, prepare_database
from m365connect.demo.today import show_todays_tenant
from m365connect.explanations import Context
from m365connect.settings import Settings
from m365connect.simulator import FakeMicrosoft
from m365connect.simulator.clouds import CLOUDS, GLOBAL, path_prefix
from m365connect.simulator.server import sigterm_as_ctrl_c

AppFactory = Callable[[Settings], Any]


def _settings(workdir: Path, fake: FakeMicrosoft) -> Settings:
    # Every national cloud at the simulator's prefix for it (a usgov credential talks to /clouds/usgov).
    national = {cloud: f"{fake.base_url}{path_prefix(cloud)}" for cloud in CLOUDS if cloud != GLOBAL}
    return Settings(
        database_url=f"sqlite+aiosqlite:///{workdir / 'demo.db'}",
        encryption_keys=generate_key(),
        login_url=fake.base_url,
        graph_url=fake.base_url,
        cloud_urls=json.dumps(
            {cloud: {"login_url": url, "graph_url": url} for cloud, url in national.items()}
        ),
        ca_bundle=fake.ca_path,
        dns_nameservers=f"127.0.0.1:{fake.dns_port}",
        dns_timeout=1.0,
        # Demo settings (said in the output): the webhook receiver is local plain http, and the engine
        # looks for due work often, so an event reaches it within a second or so.
        webhook_allow_private_networks=True,
        work_poll_seconds=0.2,
    )


def _connect_tenant(
    console: Console, client: ServiceClient, tenant: TenantPlan, login_url: str
) -> tuple[int, list[ItemResult]]:
    """Add the tenant's credential, connect its mailboxes, print the results; the credential id and the
    results."""
    credential = client.add_credential(
        tenant_id=tenant.tenant_id,
        client_id=tenant.client_id,
        client_secret=tenant.client_secret,
        secret_expires_at=tenant.secret_expires_at,
        name=tenant.name,
        cloud=tenant.cloud,
    )
    credential_id = int(credential["credential_id"])
    results = client.bulk([{"mailbox_email": a} for a in tenant.addresses], credential_id=credential_id)
    connected = sum(item.success for item in results)
    cloud = "" if tenant.cloud == GLOBAL else f", cloud {tenant.cloud}"
    title = (
        f"Credential {credential_id} '{tenant.name}' (tenant {tenant.tenant_id}{cloud}): "
        f"{connected} of {len(results)} connected"
    )
    console.print()
    console.print(title, style="bold", highlight=False, soft_wrap=True)
    report.print_results(console, results, cloud=tenant.cloud)
    context = Context(
        tenant_id=tenant.tenant_id, client_id=tenant.client_id, login_url=login_url, cloud=tenant.cloud
    )
    how = report.fixes(results, context)
    if how is not None:
        console.print(how, soft_wrap=True, highlight=False)
    return credential_id, results


def _a_user_mailbox(results: list[ItemResult]) -> tuple[int, str]:
    """The first connected user mailbox (a user can be disabled; a shared mailbox's sign-in already is)."""
    return next(
        (r.id, r.email) for r in results if r.success and r.id is not None and r.mailbox_type == "user"
    )


def command_name() -> str:
    """This command as the user can type it again: `m365connect` when that is on PATH and is this one,
    else the path it was started by (e.g. `.venv/bin/m365connect`, not on PATH outside the venv)."""
    started = Path(sys.argv[0])
    on_path = shutil.which("m365connect")
    if started.name != "m365connect" or not started.is_file():
        started = Path(sys.executable).with_name("m365connect")  # run as `python -m ...` or embedded
    if on_path is not None and (not started.is_file() or Path(on_path).resolve() == started.resolve()):
        return "m365connect"
    return shlex.quote(str(started))


def _next_steps(console: Console, *, url: str, key: str, credential_id: int, csv_path: Path) -> None:
    api = f"{url}/rest/v2/mailboxes/microsoft"
    command = command_name()
    bulk_body = f'{{"credential_id":{credential_id},"accounts":[{{"mailbox_email":"jimothy@contoso.com"}}]}}'
    lines = [
        f"export KEY={key}",
        f'curl -s -H "x-api-key: $KEY" {api}/credentials',
        f'curl -s -H "x-api-key: $KEY" "{api}?page=0"',
        f'curl -s -X POST {api}/bulk -H "x-api-key: $KEY" -H "Content-Type: application/json" \\\n'
        f"  -d '{bulk_body}'",
        f"M365CONNECT_API_KEY=$KEY {command} connect {shlex.quote(str(csv_path))} --url {url} "
        f"--credential-id {credential_id}",
        f"M365CONNECT_API_KEY=$KEY {command} credentials list --url {url}",
        f"M365CONNECT_API_KEY=$KEY {command} events tail --url {url}",
        f"M365CONNECT_API_KEY=$KEY {command} webhooks list --url {url}",
    ]
    console.print()
    console.print(Rule("Try it"))
    console.print(
        f"The service is running at {url} (API documentation: {url}/docs). In another shell:", soft_wrap=True
    )
    console.print("\n".join(lines), highlight=False, soft_wrap=True, markup=False)


def _wait_for_ctrl_c(console: Console) -> None:
    console.print("\nPress Ctrl-C to stop the service and the simulator.")
    try:
        while True:
            time.sleep(1.0)
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM through sigterm_as_ctrl_c
        pass


def run_demo(*, create_app: AppFactory, port: int, wait: bool, console: Console) -> None:
    """Run the whole demo; everything started is stopped and removed on return (SIGTERM included)."""
    scenario = load_packaged_scenario()
    plans = plan(scenario)
    with packaged_certificate_path() as path:
        today = todays_tenant(scenario, path.read_text(encoding="utf-8"))
    with sigterm_as_ctrl_c(), ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="m365connect-demo-")))
        console.print("Starting the Microsoft simulator (identity platform, Graph, DNS) ...")
        fake = stack.enter_context(FakeMicrosoft(scenario, port=0, dns_port=0))
        settings = _settings(workdir, fake)
        key, today_key = prepare_database(settings, (DEMO_ACCOUNT, TODAY_ACCOUNT))
        service = stack.enter_context(ServiceThread(create_app(settings), port=port))
        if service.port_was_taken:
            console.print(
                f"Port {port} is already in use (by `m365connect serve`?): the demo serves on "
                f"{service.url} instead.",
                soft_wrap=True,
                highlight=False,
            )
        console.print(
            f"m365connect is serving at {service.url} (database {workdir / 'demo.db'})", soft_wrap=True
        )
        with ServiceClient(url=service.url, api_key=key) as client:
            connected = [_connect_tenant(console, client, tenant, fake.base_url) for tenant in plans]
        ids = [credential_id for credential_id, _ in connected]
        if today is not None:
            with ServiceClient(url=service.url, api_key=today_key) as client:
                show_todays_tenant(console, client, today, fake)
        receiver = stack.enter_context(Receiver())
        with ServiceClient(url=service.url, api_key=key) as client:
            show_failing_and_recovered(
                console,
                client,
                fake=fake,
                receiver=receiver,
                tenant_id=plans[0].tenant_id,
                mailbox=_a_user_mailbox(connected[0][1]),
            )
        csv_path = workdir / "mailboxes.csv"
        csv_path.write_text(
            "mailbox_email\r\n" + "".join(f"{address}\r\n" for address in plans[0].addresses[:4]),
            encoding="utf-8",
        )
        _next_steps(console, url=service.url, key=key, credential_id=ids[0], csv_path=csv_path)
        if wait:
            _wait_for_ctrl_c(console)
    console.print("stopped")
