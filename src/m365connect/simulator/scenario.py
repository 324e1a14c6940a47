"""The scenario file: tenants, apps, users, DNS zones and faults, validated strictly (YAML or JSON)."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal

import yaml
from cryptography import x509
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from m365connect.simulator.budgets import Budgets
from m365connect.simulator.clouds import CloudName
from m365connect.simulator.exchange_rbac import Group, RoleAssignment
from m365connect.simulator.faults import Faults

DEFAULT_SKU_ID = "6fd2c87f-b296-42f0-b197-1e91e994b900"  # Office 365 E3 (ENTERPRISEPACK)
_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")
_ROLE = re.compile(r"^[A-Za-z]+(\.[A-Za-z]+)+$")
_PROXY = re.compile(r"^[A-Za-z0-9]+:.+$")

MailboxKind = Literal["user", "shared", "room", "equipment", "none"]


class ScenarioError(ValueError):
    """A scenario file that cannot be read or does not validate; the message names each problem."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Secret(_Strict):
    """One client secret of an app registration."""

    value: Annotated[str, Field(min_length=1)]
    expires_at: AwareDatetime

    def expired(self, now: datetime) -> bool:
        """Whether the secret has expired at the given instant."""
        return self.expires_at <= now


class KeyCredential(_Strict):
    """A certificate of an app registration (Entra's keyCredentials): its public part, as PEM, and its
    endDateTime (`expires_at`, by default the certificate's notAfter; Graph lets an admin set it earlier)."""

    certificate: Annotated[str, Field(min_length=1)]
    expires_at: AwareDatetime | None = None

    @field_validator("certificate")
    @classmethod
    def _is_a_certificate(cls, pem: str) -> str:
        try:
            x509.load_pem_x509_certificate(pem.encode())
        except ValueError:
            raise ValueError("is not a PEM X.509 certificate") from None
        return pem

    @property
    def parsed(self) -> x509.Certificate:
        """The parsed certificate."""
        return x509.load_pem_x509_certificate(self.certificate.encode())

    def expired(self, now: datetime) -> bool:
        """Whether Entra treats the key as expired at the given instant."""
        return (self.expires_at or self.parsed.not_valid_after_utc) <= now


class App(_Strict):
    """An app registration with its service principal in the tenant."""

    client_id: uuid.UUID
    name: Annotated[str, Field(min_length=1)]
    enabled: bool = True
    roles: list[str] = []
    secrets: list[Secret] = []
    key_credentials: list[KeyCredential] = []

    @field_validator("roles")
    @classmethod
    def _roles_look_like_permissions(cls, roles: list[str]) -> list[str]:
        for role in roles:
            if not _ROLE.match(role):
                raise ValueError(f"{role!r} is not an application permission name such as 'Mail.Send'")
        return roles


class User(_Strict):
    """A directory user and, unless mailbox is 'none', its Exchange Online mailbox."""

    user_principal_name: Annotated[str, Field(min_length=3)]
    id: uuid.UUID | None = None
    display_name: Annotated[str, Field(min_length=1)]
    proxy_addresses: list[str] = []
    mail: str | None = None
    # None: as Exchange creates the mailbox, enabled for a user, sign-in blocked for shared, room and
    # equipment mailboxes (New-Mailbox -Shared/-Room/-Equipment).
    account_enabled: bool | None = None
    user_type: Literal["Member", "Guest"] = "Member"
    mailbox: MailboxKind = "user"
    blocked_apps: list[uuid.UUID] = []
    assigned_licenses: list[uuid.UUID] | None = None

    @field_validator("proxy_addresses")
    @classmethod
    def _one_primary(cls, addresses: list[str]) -> list[str]:
        for address in addresses:
            if not _PROXY.match(address):
                raise ValueError(f"{address!r} is not a proxy address such as 'SMTP:jim@contoso.com'")
        primaries = [a for a in addresses if a.startswith("SMTP:")]
        has_smtp = any(a[:5].lower() == "smtp:" for a in addresses)
        if has_smtp and len(primaries) != 1:
            raise ValueError("SMTP proxy addresses need exactly one primary 'SMTP:' address")
        return addresses

    @property
    def smtp_addresses(self) -> list[str]:
        """Every SMTP address of the user (primary and aliases), without the prefix."""
        return [a[5:] for a in self.proxy_addresses if a[:5].lower() == "smtp:"]

    def effective_mail(self) -> str | None:
        """The mail property: as given, else the primary SMTP address, else null."""
        if "mail" in self.model_fields_set:
            return self.mail
        return next((a[5:] for a in self.proxy_addresses if a.startswith("SMTP:")), None)

    def effective_id(self, tenant_id: uuid.UUID) -> str:
        """The object id: as given, else uuid5 of the UPN in the tenant's namespace (stable)."""
        return str(self.id or uuid.uuid5(tenant_id, self.user_principal_name.lower()))

    def effective_account_enabled(self) -> bool:
        """accountEnabled: as given, else false for a shared or resource mailbox, true otherwise."""
        if self.account_enabled is not None:
            return self.account_enabled
        return self.mailbox not in ("shared", "room", "equipment")

    def effective_licenses(self) -> list[str]:
        """SKU ids of the assigned licenses: as given, else one E3 licence for a user mailbox."""
        if self.assigned_licenses is not None:
            return [str(sku) for sku in self.assigned_licenses]
        return [DEFAULT_SKU_ID] if self.mailbox == "user" else []


class Tenant(_Strict):
    """An Entra ID tenant with its verified domains, app registrations and users."""

    id: uuid.UUID
    # The national cloud the tenant lives in: only that cloud's login and Graph paths find it.
    cloud: CloudName = "global"
    domains: list[str] = []
    apps: list[App] = []
    users: list[User] = []
    # Exchange Online RBAC for Applications (exchange_rbac.py): groups for scopes, role assignments.
    groups: list[Group] = []
    exchange_role_assignments: list[RoleAssignment] = []

    @field_validator("domains")
    @classmethod
    def _valid_domains(cls, domains: list[str]) -> list[str]:
        lowered = [d.lower() for d in domains]
        for domain in lowered:
            if not _DOMAIN.match(domain):
                raise ValueError(f"{domain!r} is not a DNS domain name")
        return lowered

    @model_validator(mode="after")
    def _consistent(self) -> Tenant:
        _unique("client_id", (str(app.client_id) for app in self.apps))
        _unique("address", _addresses(self))
        app_ids = {app.client_id for app in self.apps}
        for user in self.users:
            suffix = user.user_principal_name.rpartition("@")[2].lower()
            if suffix not in self.domains:
                raise ValueError(
                    f"{user.user_principal_name!r}: the UPN suffix is not a domain of the tenant"
                )
            unknown = [str(a) for a in user.blocked_apps if a not in app_ids]
            if unknown:
                raise ValueError(f"{user.user_principal_name!r}: blocked_apps names unknown apps {unknown}")
        self._check_rbac(app_ids)
        return self

    def _check_rbac(self, app_ids: set[uuid.UUID]) -> None:
        known = set(_addresses(self))
        groups = {g.name.lower() for g in self.groups}
        for group in self.groups:
            _known_names(f"group {group.name!r}", group.members, known)
        for assignment in self.exchange_role_assignments:
            if assignment.app not in app_ids:
                raise ValueError(f"role assignment names unknown app {str(assignment.app)!r}")
            scope = assignment.scope
            if scope is not None and scope.group is not None and scope.group.lower() not in groups:
                raise ValueError(f"role assignment names unknown group {scope.group!r}")
            if scope is not None and scope.mailboxes is not None:
                _known_names("role assignment scope", scope.mailboxes, known)


class DnsConfig(_Strict):
    """DNS zones (origin -> zone-file text) and names answered SERVFAIL."""

    zones: dict[str, str] = {}
    servfail: list[str] = []


class Scenario(_Strict):
    """Everything the simulator serves: directory, DNS, initial faults and Graph's budgets (off)."""

    tenants: list[Tenant] = []
    dns: DnsConfig = Field(default_factory=DnsConfig)
    faults: Faults = Field(default_factory=Faults)
    budgets: Budgets = Field(default_factory=Budgets)

    @model_validator(mode="after")
    def _globally_unique(self) -> Scenario:
        _unique("tenant id", (str(t.id) for t in self.tenants))
        _unique("domain", (d for t in self.tenants for d in t.domains))
        _unique("user id", (u.effective_id(t.id) for t in self.tenants for u in t.users))
        return self


def _addresses(tenant: Tenant) -> Iterator[str]:
    """Every address a user of the tenant answers to: UPN, mail and SMTP proxy addresses, once per user."""
    for user in tenant.users:
        mail = user.effective_mail()
        own = {user.user_principal_name.lower(), *(a.lower() for a in user.smtp_addresses)}
        yield from own | ({mail.lower()} if mail else set())


def _known_names(what: str, names: Iterable[str], known: set[str]) -> None:
    unknown = [n for n in names if n.lower() not in known]
    if unknown:
        raise ValueError(f"{what} names addresses of no user {unknown}")


def _unique(what: str, values: Iterable[str]) -> None:
    seen: set[str] = set()
    for value in values:
        key = value.lower()
        if key in seen:
            raise ValueError(f"duplicate {what} {value!r}")
        seen.add(key)


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file; YAML or JSON by extension, else by content."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read: {exc.strerror}") from exc
    try:
        data = _parse(text, path.suffix.lower())
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        raise ScenarioError(f"{path}: not valid YAML or JSON: {exc}") from exc
    return parse_scenario(data, source=str(path))


def parse_scenario(data: object, *, source: str = "scenario") -> Scenario:
    """Validate already-parsed scenario data, turning pydantic errors into one readable ScenarioError."""
    try:
        return Scenario.model_validate(data if data is not None else {})
    except ValidationError as exc:
        problems = [f"  {_location(e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise ScenarioError(f"{source}: invalid scenario:\n" + "\n".join(problems)) from None


def _parse(text: str, suffix: str) -> object:
    if suffix == ".json" or (suffix not in (".yaml", ".yml") and text.lstrip().startswith("{")):
        return json.loads(text)
    return yaml.safe_load(text)


def _location(loc: tuple[int | str, ...]) -> str:
    """Render a pydantic location like tenants[0].apps[1].secrets (the top level is '(root)')."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(root)"
