"""Wire shapes of the credential endpoints (API.md §2)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, SecretStr, StrictStr, field_validator

from m365connect.wire import parse_iso_datetime

Name = Annotated[StrictStr, Field(min_length=1, max_length=200)]


def _parse_expiry(value: str) -> datetime:
    try:
        return parse_iso_datetime(value)
    except ValueError:
        raise ValueError("must be an ISO 8601 date-time such as 2027-11-28T23:59:59Z") from None


class CredentialCreate(BaseModel):
    """A Microsoft Entra app registration to verify and store."""

    model_config = ConfigDict(strict=True)

    tenant_id: StrictStr
    client_id: StrictStr
    client_secret: SecretStr
    secret_expires_at: datetime
    name: Name | None = None

    @field_validator("secret_expires_at", mode="before")
    @classmethod
    def _expiry(cls, value: object) -> datetime:
        if not isinstance(value, str):
            raise ValueError("must be an ISO 8601 date-time string")
        return _parse_expiry(value)


class CredentialUpdate(BaseModel):
    """Rename, or rotate the secret (client_secret and secret_expires_at together)."""

    model_config = ConfigDict(strict=True)

    name: Name | None = None
    client_secret: SecretStr | None = None
    secret_expires_at: datetime | None = None

    @field_validator("secret_expires_at", mode="before")
    @classmethod
    def _expiry(cls, value: object) -> datetime:
        if not isinstance(value, str):
            raise ValueError("must be an ISO 8601 date-time string")
        return _parse_expiry(value)


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


class ValidationMessage(BaseModel):
    """A 422 answer: one UPPER_SNAKE code."""

    message: str


class GenericErrorBody(BaseModel):
    """Woodpecker's generic error body."""

    title: str
    status: int
    detail: str
    timestamp: str = Field(examples=["2025-03-05 17:57:00"])
