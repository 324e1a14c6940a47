"""Certificate credentials: read what the account sends (PEM or base64 PKCS#12) into what is stored.

Only the private key is kept secret (sealed like a client secret, in the same column); the certificate
itself is not stored: the client assertion names it by its SHA-1 thumbprint (`x5t`), which Microsoft
matches against the app registration's keyCredentials, and its `notAfter` becomes `secret_expires_at`.
Every refusal is 422 INVALID_CERTIFICATE, and no message ever repeats the text (it holds a private key).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from m365connect.codes import ErrorCode
from m365connect.credentials.schemas import CredentialCreate, CredentialUpdate
from m365connect.db.base import utcnow
from m365connect.errors import BadRequest, ValidationCodeError
from m365connect.microsoft.token import ClientCredential

MIN_RSA_BITS = 2048  # the contract's floor (API.md §2); shorter RSA keys are considered breakable
_PEM_MARK = "-----BEGIN "
_KEY_LABELS = ("-----BEGIN PRIVATE KEY-----", "-----BEGIN RSA PRIVATE KEY-----")


@dataclass(frozen=True)
class ParsedCertificate:
    """A usable certificate credential: the key to seal, the thumbprint to show, the expiry to store."""

    private_key_pem: str = field(repr=False)
    thumbprint: str
    not_after: datetime


def _invalid() -> ValidationCodeError:
    return ValidationCodeError(ErrorCode.INVALID_CERTIFICATE)


def thumbprint(certificate: x509.Certificate) -> str:
    """Hex SHA-1 of the DER certificate, uppercase, as the Entra portal shows it."""
    return certificate.fingerprint(hashes.SHA1()).hex().upper()


def _from_pem(text: str) -> tuple[rsa.RSAPrivateKey, list[x509.Certificate]]:
    data = text.encode()
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise _invalid() from None
    start = min((i for label in _KEY_LABELS if (i := text.find(label)) >= 0), default=-1)
    if start < 0:  # no key at all, or only an encrypted one ("ENCRYPTED PRIVATE KEY"): we need it in clear
        raise _invalid()
    try:
        key = serialization.load_pem_private_key(data[start:], password=None)
    except (ValueError, TypeError):
        raise _invalid() from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise _invalid()
    return key, certificates


def _from_pkcs12(text: str, password: str | None) -> tuple[rsa.RSAPrivateKey, list[x509.Certificate]]:
    try:
        data = base64.b64decode("".join(text.split()), validate=True)
        key, certificate, extra = pkcs12.load_key_and_certificates(
            data, password.encode() if password else None
        )
    except (binascii.Error, ValueError, TypeError):
        raise _invalid() from None
    if not isinstance(key, rsa.RSAPrivateKey) or certificate is None:
        raise _invalid()
    return key, [certificate, *extra]


def _public_numbers(certificate: x509.Certificate) -> rsa.RSAPublicNumbers | None:
    candidate = certificate.public_key()
    return candidate.public_numbers() if isinstance(candidate, rsa.RSAPublicKey) else None


def parse_certificate(text: str, *, password: str | None = None) -> ParsedCertificate:
    """The certificate whose public key is the given RSA key (>= 2048 bits), or 422 INVALID_CERTIFICATE.

    A PEM text may carry a chain: the leaf is the certificate that matches the key.
    """
    if _PEM_MARK in text:
        key, certificates = _from_pem(text)
    else:
        key, certificates = _from_pkcs12(text, password)
    if key.key_size < MIN_RSA_BITS:
        raise _invalid()
    public = key.public_key().public_numbers()
    leaf = next((c for c in certificates if _public_numbers(c) == public), None)
    if leaf is None:
        raise _invalid()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return ParsedCertificate(
        private_key_pem=pem, thumbprint=thumbprint(leaf), not_after=leaf.not_valid_after_utc.astimezone(UTC)
    )


CLIENT_SECRET = "client_secret"
CERTIFICATE = "certificate"


@dataclass(frozen=True)
class Proof:
    """What proves the app to Microsoft: a client secret, or a certificate's private key and thumbprint."""

    material: str = field(repr=False)  # the secret's value, or the private key PEM: sealed the same way
    expires_at: datetime
    thumbprint: str | None = None

    @property
    def credential_type(self) -> str:
        """`client_secret` or `certificate`."""
        return CLIENT_SECRET if self.thumbprint is None else CERTIFICATE


def check_proof_fields(*, secret: bool, certificate: bool, expires_at: bool, password: bool) -> None:
    """The 400s that need no parsing: exactly one kind of proof, and the fields that go with it."""
    if secret and certificate:
        raise BadRequest("Send either 'client_secret' or 'certificate', not both")
    if password and not certificate:
        raise BadRequest("Field 'certificate_password' goes with 'certificate'")
    if not certificate and secret != expires_at:
        raise BadRequest("Fields 'client_secret' and 'secret_expires_at' must be sent together")


def certificate_proof(text: str, *, password: str | None, expires_at: datetime | None) -> Proof:
    """A parsed certificate; `secret_expires_at` defaults to its notAfter and may not be later."""
    parsed = parse_certificate(text, password=password)
    if expires_at is not None and expires_at > parsed.not_after:
        raise BadRequest(
            "Field 'secret_expires_at' is later than the certificate's notAfter "
            f"({parsed.not_after.strftime('%Y-%m-%dT%H:%M:%SZ')})"
        )
    return Proof(parsed.private_key_pem, expires_at or parsed.not_after, parsed.thumbprint)


def check_body_proof(data: CredentialCreate | CredentialUpdate) -> None:
    """The 400s of a creation or rotation body about its secret or certificate fields."""
    given = data.model_fields_set
    check_proof_fields(
        secret="client_secret" in given and data.client_secret is not None,
        certificate="certificate" in given and data.certificate is not None,
        expires_at="secret_expires_at" in given and data.secret_expires_at is not None,
        password="certificate_password" in given and data.certificate_password is not None,
    )


def proof_of(data: CredentialCreate | CredentialUpdate) -> Proof:
    """The checked secret or certificate of a body that passed `check_body_proof`."""
    if data.certificate is not None:
        password = data.certificate_password.get_secret_value() if data.certificate_password else None
        text = data.certificate.get_secret_value()
        proof = certificate_proof(text, password=password, expires_at=data.secret_expires_at)
    else:
        if data.client_secret is None or data.secret_expires_at is None:  # refused by check_body_proof
            raise BadRequest("Fields 'client_secret' and 'secret_expires_at' must be sent together")
        proof = Proof(data.client_secret.get_secret_value(), data.secret_expires_at)
        if not proof.material.strip():
            raise ValidationCodeError(ErrorCode.INVALID_CLIENT_SECRET)
    if proof.expires_at <= utcnow():
        raise ValidationCodeError(ErrorCode.CLIENT_SECRET_EXPIRED)
    return proof


def client_credential_of(tenant: str, client_id: str, proof: Proof) -> ClientCredential:
    """What the token client needs to prove the app with this secret or certificate."""
    return ClientCredential(tenant, client_id, proof.material, certificate_thumbprint=proof.thumbprint)
