"""The service's TLS trust: system trust plus M365CONNECT_CA_BUNDLE, built once per bundle version in a
process, and rebuilt when the bundle file changes."""

from __future__ import annotations

import os
import ssl
from pathlib import Path

import pytest

from m365connect.settings import Settings
from m365connect.state import microsoft_ssl_context, trust_context
from tests.certificates import make_certificate


def _certificates(context: ssl.SSLContext) -> int:
    return int(context.cert_store_stats()["x509"])


def test_one_context_per_bundle_version_with_the_bundles_certificates(tmp_path: Path) -> None:
    system = trust_context()
    assert trust_context() is system
    first, second = make_certificate(elliptic=True), make_certificate(name="second", elliptic=True)
    bundle = tmp_path / "ca.pem"
    bundle.write_text(first.certificate_pem)

    with_first = trust_context(bundle)
    assert with_first is not system
    assert trust_context(bundle) is with_first  # built once for this version of the file
    assert _certificates(with_first) == _certificates(system) + 1

    bundle.write_text(first.certificate_pem + second.certificate_pem)
    stat = bundle.stat()
    os.utime(bundle, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # even within the clock's tick
    with_both = trust_context(bundle)
    assert with_both is not with_first
    assert _certificates(with_both) == _certificates(system) + 2
    assert _certificates(system) == _certificates(trust_context())


def test_the_microsoft_context_is_the_bundles(tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text(make_certificate(elliptic=True).certificate_pem)
    settings = Settings(database_url="sqlite+aiosqlite:///x.db", ca_bundle=bundle)
    assert microsoft_ssl_context(settings) is trust_context(bundle)
    assert microsoft_ssl_context(Settings(database_url="sqlite+aiosqlite:///x.db")) is trust_context()


def test_a_ca_bundle_that_is_not_pem_is_refused_in_one_line(tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("not a certificate")
    with pytest.raises(ValueError, match="is not a readable PEM file of CA certificates"):
        Settings(database_url="sqlite+aiosqlite:///x.db", ca_bundle=bundle)
