"""Wire shapes of the credential endpoints (API.md §2)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from m365connect.microsoft.clouds import CloudName
from m365connect.wire import Text, WireDateTime, WireSecret, WireText

# graph_credentials.name is String(200). tenant_id (255) and client_id (36) need no length here: the
# service's format checks refuse anything longer with INVALID_TENANT_ID / INVALID_CLIENT_ID first.
NAME_LENGTH = 200
Name = Annotated[str, Text(min_length=1, max_length=NAME_LENGTH)]
# A PEM text (certificate + RSA key, with its line breaks) or a base64 PKCS#12 file: 64 KiB holds a
# 4096-bit key with a long chain; longer is refused (400) before any parsing.
CERTIFICATE_LENGTH = 65536
CertificateText = Annotated[
    SecretStr,
    Field(
        min_length=1,
        max_length=CERTIFICATE_LENGTH,
        description="PEM certificate + unencrypted RSA key, or base64 PKCS#12",
    ),
]

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
    "certificate": {
        "summary": "A certificate credential (expiry from the certificate's notAfter)",
        "value": {
            "tenant_id": "bbfb2db7-aaf4-4f7c-9dc2-2c9160d1cb32",
            "client_id": "e1c6ac69-480e-4a17-9b85-3467967bd179",
            "certificate": "-----BEGIN CERTIFICATE-----\n...\n-----END CERTIFICATE-----\n"
            "-----BEGIN PRIVATE KEY-----\n...\n-----END PRIVATE KEY-----\n",
        },
    },
    "usgov": {
        "summary": "A GCC High tenant (national cloud)",
        "value": {
            "tenant_id": "contoso.onmicrosoft.us",
            "client_id": "e1c6ac69-480e-4a17-9b85-3467967bd179",
            "client_secret": "<the secret's value>",
            "secret_expires_at": "2027-11-28",
            "cloud": "usgov",
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
    "cloud": "global",
    "credential_type": "client_secret",
    "certificate_thumbprint": None,
    "status": "VALID",
    "verified_at": "2026-11-21T20:00:00Z",
    "checked_at": "2026-11-21T20:00:00Z",
    "expires_in_days": 372,
    "granted_permissions": ["Mail.Send", "MailboxSettings.Read", "User.Read.All"],
    "missing_permissions": [],
}


class CredentialCreate(BaseModel):
    """A Microsoft Entra app registration to verify and store."""

    model_config = ConfigDict(strict=True)

    tenant_id: WireText
    client_id: WireText
    client_secret: WireSecret | None = Field(default=None, description="Required unless `certificate`")
    secret_expires_at: WireDateTime | None = Field(
        default=None, description="Required with a secret; with a certificate, at most its notAfter"
    )
    certificate: CertificateText | None = None
    certificate_password: WireSecret | None = Field(default=None, description="Of a PKCS#12 certificate")
    name: Name | None = None
    cloud: CloudName = Field(
        default="global", description="The national cloud of the app registration; cannot change later"
    )


class CredentialUpdate(BaseModel):
    """Rename, or rotate the secret (client_secret and secret_expires_at together) or the certificate."""

    # Other fields are kept (not ignored) so that the service can refuse the immutable ones by name.
    model_config = ConfigDict(strict=True, extra="allow")

    name: Name | None = None
    client_secret: WireSecret | None = None
    secret_expires_at: WireDateTime | None = None
    certificate: CertificateText | None = None
    certificate_password: WireSecret | None = None


class CredentialRead(BaseModel):
    """A stored credential; never its secret."""

    model_config = ConfigDict(json_schema_extra={"examples": [READ_EXAMPLE]})

    credential_id: int
    tenant_id: str
    client_id: str
    secret_expires_at: str
    name: str
    cloud: str = Field(description="global, usgov, usgov-dod or china")
    credential_type: str = Field(description="client_secret or certificate")
    certificate_thumbprint: str | None = Field(description="Hex SHA-1 of the certificate, uppercase")
    status: str = Field(description="VALID, EXPIRED or INVALID")
    verified_at: str | None = Field(description="Last time Microsoft granted a token for it")
    checked_at: str | None = Field(description="Last time Microsoft was asked, whatever it answered")
    expires_in_days: int = Field(description="Whole days until secret_expires_at (floor; negative once past)")
    granted_permissions: list[str]
    missing_permissions: list[str]


class CredentialList(BaseModel):
    """All credentials of the account, oldest first."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"credentials": [READ_EXAMPLE]}]})

    credentials: list[CredentialRead]
