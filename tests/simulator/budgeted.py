"""A scenario sized for Graph's budgets (one tenant per size S, M, L) and a clock the tests move by hand."""

from __future__ import annotations

import threading
import uuid
from typing import Any, NamedTuple

from m365connect.simulator import Scenario
from m365connect.simulator.scenario import parse_scenario

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
ROLES = ["User.Read.All", "Mail.Send", "MailboxSettings.Read"]


class ManualClock:
    """A monotonic clock that stands still until a test advances it (no sleeping through windows)."""

    def __init__(self) -> None:
        self._now = 1_000.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds


class SizedTenant(NamedTuple):
    """A tenant of the budget scenario: id, domain, number of users and its apps' (client id, secret)."""

    id: str
    domain: str
    users: int
    apps: tuple[tuple[str, str], ...]

    def mailbox(self, index: int) -> str:
        return f"user{index}@{self.domain}"


def _tenant(size: str, users: int, apps: int) -> SizedTenant:
    tenant_id = str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{size}.budget.example"))
    credentials = tuple(
        (str(uuid.uuid5(uuid.NAMESPACE_DNS, f"app{n}.{size}.budget.example")), f"Bd{n}Q~{size}.Secret_{n}")
        for n in range(apps)
    )
    return SizedTenant(tenant_id, f"{size}.budget.example", users, credentials)


# Microsoft's sizes: S under 50 users, M 50 to 500, L above 500; each tenant at the edge of its size.
SMALL = _tenant("small", 49, apps=2)
MEDIUM = _tenant("medium", 50, apps=1)
LARGE = _tenant("large", 501, apps=1)
TENANTS = {"S": SMALL, "M": MEDIUM, "L": LARGE}


def _tenant_data(tenant: SizedTenant) -> dict[str, Any]:
    return {
        "id": tenant.id,
        "domains": [tenant.domain],
        "apps": [
            {
                "client_id": client_id,
                "name": f"Budget app {n}",
                "roles": ROLES,
                "secrets": [{"value": secret, "expires_at": "2099-12-31T23:59:59Z"}],
            }
            for n, (client_id, secret) in enumerate(tenant.apps)
        ],
        "users": [
            {
                "user_principal_name": tenant.mailbox(i),
                "display_name": f"User {i}",
                "proxy_addresses": [f"SMTP:{tenant.mailbox(i)}"],
            }
            for i in range(tenant.users)
        ],
    }


def budget_scenario() -> Scenario:
    """The three sized tenants, budgets off (as every scenario starts unless it says otherwise)."""
    return parse_scenario({"tenants": [_tenant_data(t) for t in TENANTS.values()]})


def token_form(tenant: SizedTenant, app: int = 0) -> dict[str, str]:
    client_id, secret = tenant.apps[app]
    return {
        "grant_type": "client_credentials",
        "client_id": client_id,
        "client_secret": secret,
        "scope": GRAPH_SCOPE,
    }
