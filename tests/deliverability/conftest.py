"""Fixtures for the deliverability tests: a real DNS server per test, and DKIM keys."""

from __future__ import annotations

import base64
import socket
from collections.abc import Iterable, Iterator, Mapping

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from m365connect.simulator.dns import DnsServer
from tests.deliverability.support import MICROSOFT_ZONES, Serve


@pytest.fixture
def serve() -> Iterator[Serve]:
    """Start a DnsServer over the given zones (Microsoft's SPF zone included); stopped after the test."""
    servers: list[DnsServer] = []

    def start(zones: Mapping[str, str], *, servfail: Iterable[str] = ()) -> DnsServer:
        server = DnsServer({**MICROSOFT_ZONES, **zones}, servfail=servfail)
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def dead_nameserver() -> Iterator[int]:
    """The port of a UDP socket that never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def _spki(key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey) -> str:
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()


@pytest.fixture(scope="session")
def key_2048() -> str:
    """Base64 SPKI DER of a fresh 2048-bit RSA public key."""
    return _spki(rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key())


@pytest.fixture(scope="session")
def key_1024() -> str:
    """Base64 SPKI DER of a fresh 1024-bit RSA public key."""
    return _spki(rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key())


@pytest.fixture(scope="session")
def key_1024_pkcs1() -> str:
    """Base64 bare PKCS#1 DER of a fresh 1024-bit RSA public key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()
    return base64.b64encode(
        key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    ).decode()


@pytest.fixture(scope="session")
def key_512() -> str:
    """Base64 SPKI DER of a 512-bit RSA public key (cryptography refuses to generate one, so built)."""
    return _spki(rsa.RSAPublicNumbers(65537, (1 << 511) | 1).public_key())


@pytest.fixture(scope="session")
def key_ec() -> str:
    """Base64 SPKI DER of an EC P-256 public key: valid DER, not RSA."""
    return _spki(ec.generate_private_key(ec.SECP256R1()).public_key())
