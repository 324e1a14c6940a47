"""The example scenario shipped inside the package, and what the demo does with it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.resources import as_file, files
from pathlib import Path

from m365connect.simulator import Scenario, load_scenario
from m365connect.simulator.scenario import Tenant

NEEDED_ROLES = frozenset({"User.Read.All", "Mail.Send"})


@contextmanager
def packaged_scenario_path() -> Iterator[Path]:
    """A file path of the packaged copy of examples/scenario.yaml (works from a wheel or a zip)."""
    resource = files("m365connect.simulator").joinpath("examples", "scenario.yaml")
    with as_file(resource) as path:
        yield path


def load_packaged_scenario() -> Scenario:
    """The example scenario, parsed."""
    with packaged_scenario_path() as path:
        return load_scenario(path)


@dataclass(frozen=True)
class TenantPlan:
    """One credential to add and the mailboxes to connect with it."""

    tenant_id: str
    cloud: str
    name: str
    client_id: str
    client_secret: str
    secret_expires_at: str
    addresses: list[str]


def _working_app(tenant: Tenant) -> tuple[str, str, str, str] | None:
    now = datetime.now(UTC)
    for app in tenant.apps:
        if not app.enabled or not set(app.roles) >= NEEDED_ROLES:
            continue
        for secret in app.secrets:
            if secret.expires_at > now:
                expiry = secret.expires_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                return app.name, str(app.client_id), secret.value, expiry
    return None


def plan(scenario: Scenario) -> list[TenantPlan]:
    """Per tenant with a working app: every user's address, plus an alias and an unknown address
    (to show WRONG_ALIAS and MAILBOX_NOT_FOUND)."""
    plans: list[TenantPlan] = []
    for tenant in scenario.tenants:
        app = _working_app(tenant)
        if app is None:
            continue
        addresses = [user.effective_mail() or user.user_principal_name for user in tenant.users]
        aliases = [a for user in tenant.users for a in user.smtp_addresses[1:] if a not in addresses]
        addresses += aliases[:1]
        if tenant.domains:
            addresses.append(f"nobody@{tenant.domains[0]}")
        name, client_id, secret, expiry = app
        plans.append(TenantPlan(str(tenant.id), tenant.cloud, name, client_id, secret, expiry, addresses))
    return plans
