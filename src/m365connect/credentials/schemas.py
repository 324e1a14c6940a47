"""Wire shapes of the credential endpoints (API.md §2)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, StrictStr

from m365connect.wire import parse_iso_datetime

Name = Annotated[StrictStr, Field(min_length=1, max_length=200)]


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

    credentials: list[CredentialRead]
