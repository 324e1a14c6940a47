"""dkim_correct end to end: selector CNAMEs and key records served by a real DNS server."""

from __future__ import annotations

import pytest

from tests.deliverability.support import DOMAIN, Serve, checker_for, txt, zone

NEW_FORM = "selector{n}-example-test._domainkey.example.r-v1.dkim.mail.microsoft."
OLD_FORM = "selector{n}-example-test._domainkey.example.onmicrosoft.com."


def _zones(
    *, targets: dict[int, str], keys: dict[int, str], form: str = NEW_FORM, extra: tuple[str, ...] = ()
) -> dict[str, str]:
    """example.test with the given selector CNAMEs, and the key TXT records behind the targets."""
    cnames = [f"selector{n}._domainkey CNAME {target}" for n, target in targets.items()]
    keys_zone = zone(*(txt(form.format(n=n), record) for n, record in keys.items()))
    keys_origin = "onmicrosoft.com" if form == OLD_FORM else "dkim.mail.microsoft"
    return {DOMAIN: zone(*cnames, *extra), keys_origin: keys_zone}


def _microsoft(form: str = NEW_FORM) -> dict[int, str]:
    return {1: form.format(n=1), 2: form.format(n=2)}


async def _dkim(serve: Serve, zones: dict[str, str], **kwargs: object) -> tuple[bool, str]:
    result = await checker_for(serve(zones, **kwargs)).check_domain(DOMAIN)
    return result.dkim_correct, result.dkim_reason


async def test_new_form_with_active_selector1(serve: Serve, key_2048: str) -> None:
    zones = _zones(targets=_microsoft(), keys={1: f"v=DKIM1; k=rsa; p={key_2048}"})
    assert await _dkim(serve, zones) == (True, "ok")


async def test_old_form_with_active_selector2(serve: Serve, key_2048: str) -> None:
    zones = _zones(targets=_microsoft(OLD_FORM), keys={2: f"v=DKIM1; p={key_2048}"}, form=OLD_FORM)
    assert await _dkim(serve, zones) == (True, "ok")


async def test_mixed_case_targets_match(serve: Serve, key_1024: str) -> None:
    targets = {n: target.replace("selector", "Selector").upper() for n, target in _microsoft().items()}
    zones = _zones(targets=targets, keys={1: f"p={key_1024}"})
    assert await _dkim(serve, zones) == (True, "ok")


async def test_key_split_over_strings_and_spaces(serve: Serve, key_2048: str) -> None:
    spaced = " ".join(key_2048[i : i + 64] for i in range(0, len(key_2048), 64))
    zones = _zones(targets=_microsoft(), keys={1: f"v=DKIM1;k=rsa;t=y;p={spaced};"})
    assert await _dkim(serve, zones) == (True, "ok")


async def test_bare_pkcs1_key(serve: Serve, key_1024_pkcs1: str) -> None:
    zones = _zones(targets=_microsoft(), keys={2: f"v=DKIM1; k=rsa; p={key_1024_pkcs1}"})
    assert await _dkim(serve, zones) == (True, "ok")


@pytest.mark.parametrize(
    ("targets", "reason"),
    [
        ({1: NEW_FORM.format(n=1)}, "selector2_cname_missing"),
        ({2: NEW_FORM.format(n=2)}, "selector1_cname_missing"),
        ({}, "not_configured"),
        ({1: NEW_FORM.format(n=1), 2: "s2.example._domainkey.mailprovider.test."}, "cname_not_microsoft"),
        ({1: NEW_FORM.format(n=2), 2: NEW_FORM.format(n=1)}, "cname_not_microsoft"),
        (
            {n: f"selector{n}-other-test._domainkey.example.r-v1.dkim.mail.microsoft." for n in (1, 2)},
            "cname_not_microsoft",
        ),
        (
            {n: f"selector{n}-example-test._domainkey.example.dkim.mail.microsoft." for n in (1, 2)},
            "cname_not_microsoft",
        ),
    ],
    ids=[
        "selector2_missing",
        "selector1_missing",
        "none",
        "other_provider",
        "swapped",
        "other_domain",
        "no_partition",
    ],
)
async def test_cname_problems(serve: Serve, key_2048: str, targets: dict[int, str], reason: str) -> None:
    zones = _zones(targets=targets, keys={1: f"p={key_2048}", 2: f"p={key_2048}"})
    assert await _dkim(serve, zones) == (False, reason)


async def test_txt_instead_of_cname_is_missing(serve: Serve, key_2048: str) -> None:
    zones = _zones(targets={2: NEW_FORM.format(n=2)}, keys={2: f"p={key_2048}"})
    zones[DOMAIN] += txt("selector1._domainkey", f"v=DKIM1; p={key_2048}") + "\n"
    assert await _dkim(serve, zones) == (False, "selector1_cname_missing")


@pytest.mark.parametrize(
    ("keys", "reason"),
    [
        ({}, "no_key"),
        ({1: "v=DKIM1; k=rsa; p="}, "key_revoked"),
        ({1: "v=DKIM1; k=rsa; p= ", 2: "p="}, "key_revoked"),
        ({1: "v=DKIM1; k=rsa; p={key_512}"}, "key_too_small"),
        ({2: "v=DKIM1; k=rsa; p=aGVsbG8gd29ybGQgaGVsbG8gd29ybGQ="}, "key_invalid"),
        ({2: "v=DKIM1; k=rsa; p=!!notbase64!!"}, "key_invalid"),
        ({2: "v=DKIM1; k=rsa; p={key_ec}"}, "key_invalid"),
        ({2: "v=DKIM1; k=ed25519; p={key_2048}"}, "key_invalid"),
        ({2: "v=DKIM2; p={key_2048}"}, "key_invalid"),
        ({2: "v=DKIM1; s=tlsrpt; p={key_2048}"}, "key_invalid"),
        ({2: "v=DKIM1; p={key_2048}; p={key_2048}"}, "key_invalid"),
        ({1: "v=DKIM1; k=rsa"}, "no_key"),
    ],
    ids=[
        "both_keyless",
        "empty_p",
        "both_revoked",
        "512_bits",
        "not_der",
        "not_base64",
        "ec_key",
        "ed25519",
        "bad_version",
        "not_for_email",
        "duplicate_tag",
        "no_p_tag",
    ],
)
async def test_key_problems(
    serve: Serve, key_2048: str, key_512: str, key_ec: str, keys: dict[int, str], reason: str
) -> None:
    filled = {
        n: record.format(key_2048=key_2048, key_512=key_512, key_ec=key_ec) for n, record in keys.items()
    }
    assert await _dkim(serve, _zones(targets=_microsoft(), keys=filled)) == (False, reason)


async def test_one_good_key_outweighs_a_revoked_one(serve: Serve, key_2048: str) -> None:
    zones = _zones(targets=_microsoft(), keys={1: "v=DKIM1; p=", 2: f"v=DKIM1; p={key_2048}"})
    assert await _dkim(serve, zones) == (True, "ok")


async def test_key_lookup_failure_is_dns_error(serve: Serve, key_2048: str) -> None:
    zones = _zones(targets=_microsoft(), keys={1: f"p={key_2048}"})
    assert await _dkim(serve, zones, servfail={"dkim.mail.microsoft"}) == (False, "dns_error")


async def test_inactive_selector_failing_does_not_matter(serve: Serve, key_2048: str) -> None:
    zones = _zones(targets=_microsoft(), keys={1: f"p={key_2048}"})
    failing = {NEW_FORM.format(n=2).rstrip(".")}
    assert await _dkim(serve, zones, servfail=failing) == (True, "ok")


async def test_selector_lookup_failure_is_dns_error(serve: Serve, key_2048: str) -> None:
    zones = _zones(targets=_microsoft(), keys={1: f"p={key_2048}"})
    assert await _dkim(serve, zones, servfail={"selector2._domainkey.example.test"}) == (False, "dns_error")
