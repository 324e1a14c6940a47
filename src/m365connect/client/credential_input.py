"""What `credentials add` and `credentials rotate` send: a client secret, or a certificate file.

Secrets and certificate passwords never come from arguments (they would stay in the shell history and in
`ps`): an environment variable, else a hidden prompt. A certificate is read from a file: PEM text (the
certificate with its unencrypted key) is sent as it is; a PKCS#12 file (.pfx/.p12, or any file that is not
PEM text) as base64, with its password.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from pathlib import Path

import typer

from m365connect.client.errors import InputError

SECRET_VARIABLE = "M365CONNECT_CLIENT_SECRET"
PASSWORD_VARIABLE = "M365CONNECT_CERTIFICATE_PASSWORD"
PKCS12_SUFFIXES = frozenset({".pfx", ".p12"})
MAX_CERTIFICATE_BYTES = 1 << 20  # far above the service's 65,536 characters: it gives the exact answer


@dataclass(frozen=True)
class CredentialInput:
    """The secret fields of a credential body (unset fields are None)."""

    client_secret: str | None = None
    certificate: str | None = None
    certificate_password: str | None = None

    def fields(self) -> dict[str, str | None]:
        """Keyword arguments for ServiceClient.add_credential / rotate_credential."""
        return {
            "client_secret": self.client_secret,
            "certificate": self.certificate,
            "certificate_password": self.certificate_password,
        }


def hidden(variable: str, prompt: str) -> str:
    """A value from the environment variable, else a hidden prompt; never an argument, never echoed."""
    value = os.environ.get(variable) or typer.prompt(prompt, hide_input=True)
    return str(value).strip()


def credential_input(
    *, certificate: Path | None, password_asked: bool, secret_expires_at: str | None, secret_prompt: str
) -> CredentialInput:
    """A certificate read from its file, or a client secret (which needs its expiry)."""
    if certificate is None:
        if password_asked:
            raise InputError("--certificate-password goes with --certificate")
        if secret_expires_at is None:
            raise InputError("--secret-expires-at is required with a client secret")
        return CredentialInput(client_secret=hidden(SECRET_VARIABLE, secret_prompt))
    text, pkcs12 = read_certificate(certificate)
    password = None
    if pkcs12 and (password_asked or os.environ.get(PASSWORD_VARIABLE)):
        password = hidden(PASSWORD_VARIABLE, "Certificate password") or None
    elif password_asked:
        raise InputError(f"{certificate} is PEM text: a password is for a .pfx/.p12 file")
    return CredentialInput(certificate=text, certificate_password=password)


def read_certificate(path: Path) -> tuple[str, bool]:
    """The file's content as the API takes it, and whether it is PKCS#12."""
    try:
        if path.stat().st_size > MAX_CERTIFICATE_BYTES:
            raise InputError(f"{path} is too large for a certificate")
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read the certificate file {path}: {exc.strerror}") from None
    if path.suffix.lower() not in PKCS12_SUFFIXES:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            text = ""
        if "-----BEGIN" in text:
            return text, False
    return base64.b64encode(data).decode("ascii"), True
