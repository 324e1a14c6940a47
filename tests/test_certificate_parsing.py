"""Certificate credentials as the account sends them: PEM (PKCS#8 or PKCS#1 key) or base64 PKCS#12, and
every refusal as 422 INVALID_CERTIFICATE (API.md §2, "Certificate credentials")."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives import serialization

from m365connect.codes import ErrorCode
from m365connect.credentials.certificates import parse_certificate
from m365connect.errors import ValidationCodeError
from tests.certificates import REGISTERED, load, make_certificate

GOOD = make_certificate()
OTHER = make_certificate(name="another")


def _refused(text: str, password: str | None = None) -> None:
    with pytest.raises(ValidationCodeError) as caught:
        parse_certificate(text, password=password)
    assert caught.value.code is ErrorCode.INVALID_CERTIFICATE
    assert "PRIVATE" not in str(caught.value)
    assert "MII" not in str(caught.value)


def test_pem_with_pkcs8_key_gives_thumbprint_expiry_and_the_key() -> None:
    parsed = parse_certificate(GOOD.pem)
    assert parsed.thumbprint == GOOD.thumbprint
    assert len(parsed.thumbprint) == 40
    assert parsed.thumbprint == parsed.thumbprint.upper()
    assert parsed.not_after == GOOD.certificate.not_valid_after_utc
    assert parsed.private_key_pem.startswith("-----BEGIN PRIVATE KEY-----")
    assert "PRIVATE" not in repr(parsed)


def test_pkcs1_key_before_the_certificate_is_read_too() -> None:
    text = GOOD.key_pem(serialization.PrivateFormat.TraditionalOpenSSL) + GOOD.certificate_pem
    assert "BEGIN RSA PRIVATE KEY" in text
    assert parse_certificate(text).thumbprint == GOOD.thumbprint


def test_a_chain_picks_the_certificate_of_the_key() -> None:
    text = OTHER.certificate_pem + GOOD.certificate_pem + GOOD.key_pem()
    assert parse_certificate(text).thumbprint == GOOD.thumbprint


@pytest.mark.parametrize("password", [None, "s3cret-pfx"])
def test_pkcs12_with_and_without_password(password: str | None) -> None:
    assert parse_certificate(GOOD.pkcs12(password), password=password).thumbprint == GOOD.thumbprint


def test_the_committed_example_certificate_parses() -> None:
    example = load(REGISTERED)
    assert parse_certificate(example.pem).thumbprint == example.thumbprint


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("not a certificate", id="garbage"),
        pytest.param("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", id="bad-pem"),
        pytest.param(GOOD.certificate_pem, id="no-key"),
        pytest.param(GOOD.key_pem(), id="no-certificate"),
        pytest.param(GOOD.certificate_pem + OTHER.key_pem(), id="key-of-another-certificate"),
        pytest.param(make_certificate(bits=1024).pem, id="rsa-1024"),
        pytest.param(make_certificate(elliptic=True).pem, id="not-rsa"),
        pytest.param(
            GOOD.certificate_pem
            + GOOD.key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(b"pw"),
            ).decode(),
            id="encrypted-pem-key",
        ),
        pytest.param(base64.b64encode(b"not pkcs12").decode(), id="bad-pkcs12"),
    ],
)
def test_unusable_certificates_are_invalid_certificate(text: str) -> None:
    _refused(text)


def test_pkcs12_with_a_wrong_password_is_invalid_certificate() -> None:
    _refused(GOOD.pkcs12("right"), password="wrong")
