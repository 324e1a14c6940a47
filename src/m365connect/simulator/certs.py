"""A private CA and the simulator's HTTPS server certificate, generated with trustme."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import trustme

# Names of the real services, so a client may also reach the simulator through /etc/hosts entries.
MICROSOFT_HOSTS = ("login.microsoftonline.com", "graph.microsoft.com")


@dataclass(frozen=True)
class ServerCertificates:
    """Paths of the CA certificate (to trust) and of the server's certificate chain and key."""

    ca_path: Path
    cert_path: Path
    key_path: Path


def issue_certificates(directory: Path, hosts: Iterable[str]) -> ServerCertificates:
    """Write ca.pem, server.pem and server-key.pem into directory; reuse the CA found there."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = _load_or_create_ca(directory)
    identities = list(dict.fromkeys([*hosts, "127.0.0.1", "localhost", *MICROSOFT_HOSTS]))
    leaf = ca.issue_cert(*identities)
    paths = ServerCertificates(
        ca_path=directory / "ca.pem",
        cert_path=directory / "server.pem",
        key_path=directory / "server-key.pem",
    )
    paths.cert_path.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    _write_private(paths.key_path, leaf.private_key_pem.bytes())
    return paths


def _load_or_create_ca(directory: Path) -> trustme.CA:
    """Reuse ca.pem + ca-key.pem from an earlier run (clients keep trusting it), else make a new CA."""
    cert, key = directory / "ca.pem", directory / "ca-key.pem"
    if cert.is_file() and key.is_file():
        return trustme.CA.from_pem(cert.read_bytes(), key.read_bytes())
    ca = trustme.CA(organization_name="m365connect simulator")
    cert.write_bytes(ca.cert_pem.bytes())
    _write_private(key, ca.private_key_pem.bytes())
    return ca


def _write_private(path: Path, data: bytes) -> None:
    """Write a private key readable by the owner only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
