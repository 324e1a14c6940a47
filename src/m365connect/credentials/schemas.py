"""Wire shapes of the credential endpoints (API.md §2)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, StrictStr

from m365connect.wire import parse_iso_datetime

Name = Annotated[StrictStr, Field(min_length=1, max_length=200)]

CREATE_EXAMPLE: dict[str, Any] = {
    "tenant_id": "bbfb2db7-aaf4-4f7c-9dc2-2c9160d1cb32",
    "client_id": "e1c6ac69-480e-4a17-9b85-3467967bd179",
    "client_secret": "<the secret's value>",
    "secret_expires_at": "2027-11-28T23:59:59Z",
    "name": "MS Graph app",
}
CREATE_EXAMPLES: dict[str, Any] = {
    "guid": {"summary": "Tenant by GUID", "value": CREATE_EXAMPLE},
    "domain": {
        "summary": "Tenant by verified domain, expiry as a bare date (23:59:59 UTC), default name",
        "value": {
            "tenant_id": "contoso.onmicrosoft.com",
            "client_id": "e1c6ac69-480e-4a17-9b85-3467967bd179",
            "client_secret": "<the secret's value>",
            "secret_expires_at": "2027-11-28",
        },
    },
}
UPDATE_EXAMPLES: dict[str, Any] = {
    "rename": {"summary": "Rename", "value": {"name": "Sales tenant app"}},
    "rotate": {
        "summary": "Rotate the secret (both fields together)",
        "value": {"client_secret": "<the new secret's value>", "secret_expires_at": "2028-11-28T23:59:59Z"},
    },
}
READ_EXAMPLE: dict[str, Any] = {
    "credential_id": 22334455,
    "tenant_id": "bbfb2db7-aaf4-4f7c-9dc2-2c9160d1cb32",
    "client_id": "e1c6ac69-480e-4a17-9b85-3467967bd179",
    "secret_expires_at": "2027-11-28T23:59:59Z",
    "name": "MS Graph app",
    "status": "VALID",
    "verified_at": "2026-11-21T20:00:00Z",
    "granted_permissions": ["Mail.Send", "MailboxSettings.Read", "User.Read.All"],
    "missing_permissions": [],
}


def _parse_expiry(value: object) -> datetime:
    if not isinstance(value, str):
        raise ValueError("must be an ISO 8601 date-time string")
    try:
        return parse_iso_datetime(value)
    except ValueError:
        raise ValueError("must be an ISO 8601 date-time such as 2027-11-28T23:59:59Z") from None


# A JSON string only (strict), parsed by us: no zone means UTC, a bare date means the end of that day.
Expiry = Annotated[datetime, BeforeValidator(_parse_expiry)]


class CredentialCreate(BaseModel):
    """A Microsoft Entra app registration to verify and store."""

    model_config = ConfigDict(strict=True)

    tenant_id: StrictStr
    client_id: StrictStr
    client_secret: SecretStr
    secret_expires_at: Expiry
    name: Name | None = None


class CredentialUpdate(BaseModel):
    """Rename, or rotate the secret (client_secret and secret_expires_at together)."""

    model_config = ConfigDict(strict=True)

    name: Name | None = None
    client_secret: SecretStr | None = None
    secret_expires_at: Expiry | None = None


class CredentialRead(BaseModel):
    """A stored credential; never its secret."""

    model_config = ConfigDict(json_schema_extra={"examples": [READ_EXAMPLE]})

    credential_id: int
    tenant_id: str
    client_id: str
    secret_expires_at: str
    name: str
    status: str = Field(description="VALID, EXPIRED or INVALID")
    verified_at: str | None
    granted_permissions: list[str]
    missing_permissions: list[str]


class CredentialList(BaseModel):
    """All credentials of the account, oldest first."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"credentials": [READ_EXAMPLE]}]})

    credentials: list[CredentialRead]
