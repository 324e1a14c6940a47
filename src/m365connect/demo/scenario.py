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


@contextmanager
def packaged_certificate_path() -> Iterator[Path]:
    """A file path of the packaged copy of examples/certificates/certificate-app.pem (a public test key)."""
    resource = files("m365connect.simulator").joinpath("examples", "certificates", "certificate-app.pem")
    with as_file(resource) as path:
        yield path


@dataclass(frozen=True)
class TodaysTenant:
    """A tenant set up the way Microsoft advises today: a certificate app and its shared mailboxes, and an
    app scoped with Exchange RBAC for Applications (no Entra Mail.Send) with mailboxes in and out of scope."""

    tenant_id: str
    certificate_client_id: str
    certificate_name: str
    certificate_pem: str
    certificate_addresses: list[str]  # the shared mailboxes and one user mailbox
    scoped_client_id: str
    scoped_name: str
    scoped_secret: str
    scope: str  # the management scope's group
    in_scope: list[str]
    out_of_scope: list[str]


def todays_tenant(scenario: Scenario, certificate_pem: str) -> TodaysTenant | None:
    """The first tenant with both an app registering this certificate and an RBAC-scoped app, if any."""
    for tenant in scenario.tenants:
        certificate_app = next(
            (a for a in tenant.apps if any(_same(k.certificate, certificate_pem) for k in a.key_credentials)),
            None,
        )
        assignment = next(
            (r for r in tenant.exchange_role_assignments if r.role == "Application Mail.Send" and r.scope),
            None,
        )
        if certificate_app is None or assignment is None or assignment.scope is None:
            continue
        scoped = next(a for a in tenant.apps if a.client_id == assignment.app)
        group = next(g for g in tenant.groups if g.name == assignment.scope.group)
        members = {m.lower() for m in group.members}
        mailboxes = {u.effective_mail(): u for u in tenant.users if u.effective_mail()}
        users = [
            m for m, u in mailboxes.items() if m and u.mailbox == "user" and u.effective_account_enabled()
        ]
        shared = [m for m, u in mailboxes.items() if m and u.mailbox == "shared"]
        return TodaysTenant(
            tenant_id=str(tenant.id),
            certificate_client_id=str(certificate_app.client_id),
            certificate_name=certificate_app.name,
            certificate_pem=certificate_pem,
            # the shared mailboxes, and a member of the scope that the scoped app does not connect
            certificate_addresses=[*shared, *[m for m in users if m in members][2:3]],
            scoped_client_id=str(scoped.client_id),
            scoped_name=scoped.name,
            scoped_secret=scoped.secrets[0].value,
            scope=group.name,
            in_scope=[m for m in users if m in members][:2],
            out_of_scope=[m for m in users if m not in members][:2],
        )
    return None


def _same(certificate: str, pem: str) -> bool:
    """Whether a registered certificate (PEM, indented in YAML) is the one at the start of `pem`."""
    first = pem.split("-----END CERTIFICATE-----")[0]
    return "".join(certificate.split()) == "".join(first.split()) + "-----ENDCERTIFICATE-----"
