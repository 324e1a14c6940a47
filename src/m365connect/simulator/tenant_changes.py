"""Changing a tenant while the simulator runs, as an administrator would: disable or re-enable a user,
remove a licence, move a mailbox out of an RBAC scope, expire or delete a secret, disable an app, remove
consent. Pure functions from one validated scenario to the next (the scenario's rules all hold after a
change); the admin API (`PATCH /_simulator/tenants/...`) and FakeMicrosoft's methods apply them.
"""

from __future__ import annotations

from typing import Any

from m365connect.simulator.scenario import Scenario, Tenant


class UnknownObject(LookupError):
    """No tenant, user or app by that name."""


def _tenant_index(scenario: Scenario, tenant: str) -> int:
    wanted = tenant.lower()
    for index, candidate in enumerate(scenario.tenants):
        if str(candidate.id) == wanted or wanted in (d.lower() for d in candidate.domains):
            return index
    raise UnknownObject(f"no tenant {tenant!r}")


def _user_index(tenant: Tenant, user: str) -> int:
    wanted = user.lower()
    for index, candidate in enumerate(tenant.users):
        keys = {candidate.user_principal_name.lower(), candidate.effective_id(tenant.id)}
        if wanted in keys:
            return index
    raise UnknownObject(f"no user {user!r} in tenant {tenant.id}")


def _app_index(tenant: Tenant, client_id: str) -> int:
    for index, candidate in enumerate(tenant.apps):
        if str(candidate.client_id) == client_id.lower():
            return index
    raise UnknownObject(f"no app {client_id!r} in tenant {tenant.id}")


def change_user(scenario: Scenario, tenant: str, user: str, changes: dict[str, Any]) -> Scenario:
    """The scenario with one user's fields replaced by `changes` (scenario field names, e.g.
    account_enabled, assigned_licenses, mailbox, proxy_addresses). Raises UnknownObject, ValidationError."""
    data = scenario.model_dump(mode="json", exclude_unset=True)
    t = _tenant_index(scenario, tenant)
    u = _user_index(scenario.tenants[t], user)
    data["tenants"][t]["users"][u].update(changes)
    return Scenario.model_validate(data)


def change_app(scenario: Scenario, tenant: str, client_id: str, changes: dict[str, Any]) -> Scenario:
    """The scenario with one app's fields replaced by `changes` (enabled, roles, secrets, key_credentials)."""
    data = scenario.model_dump(mode="json", exclude_unset=True)
    t = _tenant_index(scenario, tenant)
    a = _app_index(scenario.tenants[t], client_id)
    data["tenants"][t]["apps"][a].update(changes)
    return Scenario.model_validate(data)


def change_tenant(scenario: Scenario, tenant: str, changes: dict[str, Any]) -> Scenario:
    """The scenario with tenant-level fields replaced (groups, exchange_role_assignments)."""
    data = scenario.model_dump(mode="json", exclude_unset=True)
    t = _tenant_index(scenario, tenant)
    data["tenants"][t].update(changes)
    return Scenario.model_validate(data)
