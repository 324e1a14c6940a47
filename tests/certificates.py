"""Test certificates made with `cryptography` (self-signed, as `New-SelfSignedCertificate` or openssl make
them for an app registration), and the committed ones of examples/scenario.yaml (test keys only)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NamedTuple

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

CERTIFICATES = Path(__file__).resolve().parents[1] / "examples" / "certificates"
# The certificate app of examples/scenario.yaml: its valid and its expired certificate (with their keys).
REGISTERED = CERTIFICATES / "certificate-app.pem"
EXPIRED = CERTIFICATES / "certificate-app-expired.pem"
# Valid by its own dates, but its keyCredential's endDateTime (2025-01-01) has passed in Entra.
ENDED = CERTIFICATES / "certificate-app-ended.pem"


class CertificateBundle(NamedTuple):
    """A certificate with its key: the PEM an account sends, and what the service should derive."""

    pem: str  # certificate then unencrypted PKCS#8 key
    certificate_pem: str
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    certificate: x509.Certificate

    @property
    def thumbprint(self) -> str:
        """Hex SHA-1 of the DER certificate, uppercase."""
        return self.certificate.fingerprint(hashes.SHA1()).hex().upper()

    def key_pem(self, fmt: serialization.PrivateFormat = serialization.PrivateFormat.PKCS8) -> str:
        """The private key alone, unencrypted."""
        return self.key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption()).decode()

    def pkcs12(self, password: str | None = None) -> str:
        """A base64 PKCS#12 file of key and certificate."""
        encryption = (
            serialization.BestAvailableEncryption(password.encode())
            if password
            else serialization.NoEncryption()
        )
        data = pkcs12.serialize_key_and_certificates(b"test", self.key, self.certificate, None, encryption)
        return base64.b64encode(data).decode()


def make_certificate(
    *,
    name: str = "m365connect test",
    bits: int = 2048,
    days: int = 365,
    elliptic: bool = False,
    valid_from: datetime | None = None,
) -> CertificateBundle:
    """A fresh self-signed certificate (RSA `bits`, or P-256 when `elliptic`) valid `days` from now."""
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey = (
        ec.generate_private_key(ec.SECP256R1())
        if elliptic
        else rsa.generate_private_key(public_exponent=65537, key_size=bits)
    )
    start = valid_from or datetime.now(UTC) - timedelta(days=1)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=days))
        .sign(key, hashes.SHA256())
    )
    return _bundle(key, certificate)


def _bundle(
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, certificate: x509.Certificate
) -> CertificateBundle:
    certificate_pem = certificate.public_bytes(serialization.Encoding.PEM).decode()
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return CertificateBundle(certificate_pem + key_pem, certificate_pem, key, certificate)


def load(path: Path) -> CertificateBundle:
    """A committed certificate+key PEM file."""
    data = path.read_bytes()
    key = serialization.load_pem_private_key(data, password=None)
    assert isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey)
    return _bundle(key, x509.load_pem_x509_certificate(data))
