"""DKIM target patterns and key-record parsing, without DNS."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from m365connect.deliverability.clouds import MAIL_CLOUDS, mail_cloud
from m365connect.deliverability.dkim import is_microsoft_target, parse_tags, rsa_key_bits


@pytest.mark.parametrize(
    ("target", "selector", "domain", "expected"),
    [
        (
            "selector1-contoso-com._domainkey.contoso.n-v1.dkim.mail.microsoft.",
            "selector1",
            "contoso.com",
            True,
        ),
        (
            "selector2-contoso-com._domainkey.contoso.r-v2.dkim.mail.microsoft",
            "selector2",
            "contoso.com",
            True,
        ),
        ("SELECTOR1-Contoso-Com._domainkey.Contoso.onmicrosoft.com.", "selector1", "contoso.com", True),
        (
            "selector1-marketing-contoso-com._domainkey.contoso.onmicrosoft.com",
            "selector1",
            "marketing.contoso.com",
            True,
        ),
        (
            "selector1-contoso-com._domainkey.contoso.n-v1.dkim.mail.microsoft",
            "selector2",
            "contoso.com",
            False,
        ),
        (
            "selector1-fabrikam-com._domainkey.contoso.n-v1.dkim.mail.microsoft",
            "selector1",
            "contoso.com",
            False,
        ),
        ("selector1-contoso-com._domainkey.contoso.dkim.mail.microsoft", "selector1", "contoso.com", False),
        (
            "selector1-contoso-com._domainkey.contoso.onmicrosoft.com.evil.test",
            "selector1",
            "contoso.com",
            False,
        ),
        ("s1.domainkey.u123.wl.sendgrid.net", "selector1", "contoso.com", False),
        # Over 63 characters the label cannot be the whole dashed domain: any label is accepted.
        (
            "selector1-shortened._domainkey.contoso.n-v1.dkim.mail.microsoft",
            "selector1",
            "a" * 50 + ".example.com",
            True,
        ),
    ],
)
def test_microsoft_targets(target: str, selector: str, domain: str, expected: bool) -> None:
    pattern = MAIL_CLOUDS["global"].dkim_target
    assert is_microsoft_target(target, selector, domain, pattern=pattern) is expected


# Each cloud's initial domain: <tenant>.onmicrosoft.com, .onmicrosoft.us (GCC High, DoD),
# .partner.onmschina.cn (21Vianet); the May 2025 dkim.mail.microsoft form is documented for global only.
_CLOUD_TARGETS = {
    "com": "selector1-contoso-com._domainkey.contoso.onmicrosoft.com",
    "new": "selector1-contoso-com._domainkey.contoso.n-v1.dkim.mail.microsoft",
    "us": "selector1-contoso-com._domainkey.contoso.onmicrosoft.us",
    "cn": "selector1-contoso-com._domainkey.contoso.partner.onmschina.cn",
}


@pytest.mark.parametrize(
    ("cloud", "accepted"),
    [
        ("global", {"com", "new"}),
        ("usgov", {"us"}),
        ("usgov-dod", {"us"}),
        ("china", {"cn"}),
    ],
)
def test_each_cloud_accepts_its_own_dkim_targets_only(cloud: str, accepted: set[str]) -> None:
    pattern = mail_cloud(cloud).dkim_target
    found = {
        form
        for form, target in _CLOUD_TARGETS.items()
        if is_microsoft_target(target, "selector1", "contoso.com", pattern=pattern)
    }
    assert found == accepted


def test_an_unknown_cloud_is_refused() -> None:
    with pytest.raises(ValueError, match="mars"):
        mail_cloud("mars")


def test_tags_parse_with_whitespace_and_trailing_semicolon() -> None:
    assert parse_tags(" v = DKIM1 ;k=rsa;\tp=ab cd ; ") == {"v": "DKIM1", "k": "rsa", "p": "ab cd"}


@pytest.mark.parametrize("text", ["p=a; p=b", "no equals", "=value", "1x=value", "p=a;;q"])
def test_malformed_tag_lists(text: str) -> None:
    assert parse_tags(text) is None


def test_key_sizes(key_2048: str, key_1024: str, key_1024_pkcs1: str, key_512: str, key_ec: str) -> None:
    assert [rsa_key_bits(key) for key in (key_2048, key_1024, key_1024_pkcs1, key_512, key_ec)] == [
        2048,
        1024,
        1024,
        512,
        None,
    ]
    assert rsa_key_bits(key_2048[:40]) is None


@settings(max_examples=300, database=None, deadline=None)
@given(st.text())
def test_tag_parsing_and_key_decoding_never_raise(text: str) -> None:
    parse_tags(text)
    rsa_key_bits(text)
