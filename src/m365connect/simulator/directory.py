"""The simulated directory: the scenario with every default resolved, indexed for lookups."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

from m365connect.simulator.exchange_rbac import ExchangeGrant, resolve_grants
from m365connect.simulator.scenario import KeyCredential, Scenario, Secret, Tenant


@dataclass(frozen=True)
class DirectoryApp:
    """An app's service principal in one tenant."""

    client_id: str
    name: str
    enabled: bool
    roles: tuple[str, ...]
    secrets: tuple[Secret, ...]
    object_id: str
    key_credentials: tuple[KeyCredential, ...] = ()


@dataclass(frozen=True)
class DirectoryUser:
    """A user with mail, id and licences resolved."""

    id: str
    user_principal_name: str
    display_name: str
    mail: str | None
    proxy_addresses: tuple[str, ...]
    account_enabled: bool
    user_type: str
    mailbox: str
    blocked_apps: frozenset[str]
    licenses: tuple[str, ...]

    @property
    def mail_nickname(self) -> str:
        """The Exchange alias, taken from the UPN's local part."""
        return self.user_principal_name.partition("@")[0]


@dataclass(frozen=True)
class DirectoryTenant:
    """One tenant: its domains, service principals (by lowercase client id) and users."""

    id: str
    domains: tuple[str, ...]
    apps: Mapping[str, DirectoryApp]
    cloud: str
    users: tuple[DirectoryUser, ...]
    exchange_grants: tuple[ExchangeGrant, ...]
    _by_key: Mapping[str, DirectoryUser] = field(repr=False)
    _by_proxy: Mapping[str, tuple[DirectoryUser, ...]] = field(repr=False, default_factory=dict)

    def user(self, key: str) -> DirectoryUser | None:
        """Find a user by object id or user principal name (case-insensitive), as Graph paths do."""
        return self._by_key.get(key.lower())

    def with_proxy_address(self, proxy: str) -> tuple[DirectoryUser, ...]:
        """Users one of whose proxy addresses equals `proxy` (case-insensitive, `smtp:` prefix included)."""
        return self._by_proxy.get(proxy.lower(), ())


class Directory:
    """All tenants of a scenario, found by tenant id or by any verified domain."""

    def __init__(self, scenario: Scenario) -> None:
        self.tenants = tuple(_build_tenant(t) for t in scenario.tenants)
        self._by_name = {name: t for t in self.tenants for name in (t.id, *t.domains)}

    def tenant(self, name: str) -> DirectoryTenant | None:
        """Find a tenant by GUID or verified domain name (case-insensitive)."""
        return self._by_name.get(name.lower())

    def tenant_by_id(self, tenant_id: str) -> DirectoryTenant | None:
        """Find a tenant by GUID only."""
        tenant = self._by_name.get(tenant_id.lower())
        return tenant if tenant is not None and tenant.id == tenant_id.lower() else None

    def app_anywhere(self, client_id: str) -> DirectoryApp | None:
        """Find an app registration in any tenant (for the /common family of authorities)."""
        key = client_id.lower()
        return next((t.apps[key] for t in self.tenants if key in t.apps), None)


def _build_tenant(tenant: Tenant) -> DirectoryTenant:
    tid = tenant.id
    apps = {
        str(app.client_id): DirectoryApp(
            client_id=str(app.client_id),
            name=app.name,
            enabled=app.enabled,
            roles=tuple(app.roles),
            secrets=tuple(app.secrets),
            object_id=str(uuid.uuid5(tid, f"servicePrincipal:{app.client_id}")),
            key_credentials=tuple(app.key_credentials),
        )
        for app in tenant.apps
    }
    users = tuple(
        DirectoryUser(
            id=user.effective_id(tid),
            user_principal_name=user.user_principal_name,
            display_name=user.display_name,
            mail=user.effective_mail(),
            proxy_addresses=tuple(user.proxy_addresses),
            account_enabled=user.effective_account_enabled(),
            user_type=user.user_type,
            mailbox=user.mailbox,
            blocked_apps=frozenset(str(app) for app in user.blocked_apps),
            licenses=tuple(user.effective_licenses()),
        )
        for user in tenant.users
    )
    by_key = {key: user for user in users for key in (user.id, user.user_principal_name.lower())}
    by_proxy: dict[str, tuple[DirectoryUser, ...]] = {}
    for user in users:
        for proxy in {p.lower() for p in user.proxy_addresses}:
            by_proxy[proxy] = (*by_proxy.get(proxy, ()), user)
    addresses = {
        name.lower(): user.effective_id(tid)
        for user in tenant.users
        for name in (user.user_principal_name, user.effective_mail() or "", *user.smtp_addresses)
        if name
    }
    return DirectoryTenant(
        id=str(tid),
        domains=tuple(tenant.domains),
        apps=apps,
        cloud=tenant.cloud,
        users=users,
        exchange_grants=resolve_grants(tenant.exchange_role_assignments, tenant.groups, addresses),
        _by_key=by_key,
        _by_proxy=by_proxy,
    )
