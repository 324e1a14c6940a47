"""Exchange Online RBAC for Applications: role assignments that grant an app a role on a scope of mailboxes.

Microsoft Learn, "Role Based Access Control for Applications in Exchange Online" (reference §3.1): the
grants are "independent of the unscoped grants in Microsoft Entra ID" and the effective permission is the
union of both, so an Entra `Mail.Send` covers every mailbox whatever the scopes say. A scope is a list of
mailboxes or a group's direct members ("Nested group members are considered out of scope"). Changes take
30 minutes to 2 hours to reach Exchange's cache: `propagation_seconds` models that delay from the moment
the simulator loads the scenario.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# The Exchange application roles that include sending as the mailbox.
SEND_ROLES = frozenset(
    {"Application Mail.Send", "Application Mail Full Access", "Application Exchange Full Access"}
)
ExchangeRole = Literal[
    "Application Mail.Send",
    "Application Mail.Read",
    "Application Mail.ReadWrite",
    "Application MailboxSettings.Read",
    "Application Mail Full Access",
    "Application Exchange Full Access",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Group(_Strict):
    """A mail-enabled group; members are UPNs or SMTP addresses of users (no nesting)."""

    name: Annotated[str, Field(min_length=1)]
    members: list[str] = []


class ManagementScope(_Strict):
    """New-ManagementScope: a list of mailboxes, or the direct members of one group."""

    mailboxes: list[str] | None = None
    group: str | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> ManagementScope:
        if (self.mailboxes is None) == (self.group is None):
            raise ValueError("a scope names either mailboxes or a group")
        return self


class RoleAssignment(_Strict):
    """New-ManagementRoleAssignment -App <client_id> -Role <role> [-CustomResourceScope <scope>]."""

    app: uuid.UUID
    role: ExchangeRole
    scope: ManagementScope | None = None  # None: the whole organisation
    propagation_seconds: float = Field(default=0.0, ge=0)


@dataclass(frozen=True)
class ExchangeGrant:
    """A resolved assignment: the mailboxes (user ids) it covers (None: all) and when it takes effect."""

    app_id: str
    role: str
    user_ids: frozenset[str] | None
    effective_at: float  # time.monotonic()

    def covers(self, app_id: str, user_id: str, roles: frozenset[str], now: float) -> bool:
        """Whether this grant gives `app_id` one of `roles` on the user's mailbox at `now`."""
        return (
            self.app_id == app_id.lower()
            and self.role in roles
            and now >= self.effective_at
            and (self.user_ids is None or user_id in self.user_ids)
        )


def resolve_grants(
    assignments: Iterable[RoleAssignment], groups: Iterable[Group], user_ids: Mapping[str, str]
) -> tuple[ExchangeGrant, ...]:
    """Assignments with their scopes resolved to user ids; `user_ids` maps lowercase addresses to ids."""
    members = {group.name.lower(): group.members for group in groups}
    loaded = time.monotonic()
    grants = []
    for assignment in assignments:
        scope = assignment.scope
        covered: frozenset[str] | None = None
        if scope is not None:
            names = scope.mailboxes if scope.mailboxes is not None else members[(scope.group or "").lower()]
            covered = frozenset(user_ids[n.lower()] for n in names if n.lower() in user_ids)
        grants.append(
            ExchangeGrant(
                app_id=str(assignment.app).lower(),
                role=assignment.role,
                user_ids=covered,
                effective_at=loaded + assignment.propagation_seconds,
            )
        )
    return tuple(grants)


def has_send_assignment(grants: Iterable[ExchangeGrant], app_id: str) -> bool:
    """Whether any assignment (in effect or not) gives the app a sending role."""
    return any(g.app_id == app_id.lower() and g.role in SEND_ROLES for g in grants)


def may_send(grants: Iterable[ExchangeGrant], app_id: str, user_id: str) -> bool:
    """Whether an assignment in effect lets the app send as the user's mailbox."""
    now = time.monotonic()
    return any(g.covers(app_id, user_id, SEND_ROLES, now) for g in grants)
