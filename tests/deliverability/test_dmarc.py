"""DMARC policy discovery (RFC 7489 §6.6.3) through the checker, against a real DNS server."""

from __future__ import annotations

import dns.name
import pytest

from m365connect.deliverability.dmarc import organizational_domain
from tests.deliverability.support import DOMAIN, Serve, checker_for, txt, zone

SUBDOMAIN = f"mail.{DOMAIN}"
GOOD = "v=DMARC1; p=reject; rua=mailto:dmarc@example.test"


async def _reason(server_zones: dict[str, str], domain: str, serve: Serve, **kwargs: object) -> str:
    result = await checker_for(serve(server_zones, **kwargs)).check_domain(domain)
    assert result.dmarc_correct == (result.dmarc_reason == "ok")
    return result.dmarc_reason


@pytest.mark.parametrize(
    ("records", "reason"),
    [
        ([GOOD], "ok"),
        (["v=DMARC1; p=none"], "ok"),
        (["v=DMARC1; p=quarantine; pct=50"], "ok"),
        (["v=DMARC1; rua=mailto:dmarc@example.test"], "ok"),  # §6.6.3 step 6: counts as p=none
        ([], "no_record"),
        (["v=spf1 -all"], "no_record"),  # not a DMARC record: discarded (step 2)
        ([GOOD, "v=DMARC1; p=none"], "multiple_records"),
        ([GOOD, "v=spf1 -all"], "ok"),  # only DMARC records count
        (["v=DMARC1; p=reject; pct=200"], "invalid_syntax"),
        (["v=DMARC1; p=monitor"], "no_policy"),
    ],
)
async def test_the_record_at_the_domain(serve: Serve, records: list[str], reason: str) -> None:
    zones = {DOMAIN: zone('@ TXT "v=spf1 -all"', *(txt("_dmarc", record) for record in records))}
    assert await _reason(zones, DOMAIN, serve) == reason


async def test_a_record_in_several_strings_is_joined(serve: Serve) -> None:
    zones = {DOMAIN: zone(txt("_dmarc", "v=DMARC1; p=rej", "ect; rua=mailto:d@example.test"))}
    assert await _reason(zones, DOMAIN, serve) == "ok"


async def test_a_record_behind_a_cname(serve: Serve) -> None:
    """Hosted DMARC: _dmarc is a CNAME to a provider's record, which the resolver follows."""
    zones = {
        DOMAIN: zone("_dmarc CNAME example-test.dmarc.provider.test."),
        "provider.test": zone(txt("example-test.dmarc", "v=DMARC1; p=none")),
    }
    assert await _reason(zones, DOMAIN, serve) == "ok"


@pytest.mark.parametrize(
    ("at_subdomain", "at_organization", "reason"),
    [
        ([], [GOOD], "ok"),  # step 3: the organizational domain's record applies
        ([], ["v=DMARC1; p=reject; sp=none"], "ok"),  # sp=none is still a policy
        ([], [], "no_record"),
        (["v=DMARC2; p=reject"], [GOOD], "ok"),  # not a DMARC record: discarded, then the fallback
        (["v=DMARC1; p=reject; pct=200"], [GOOD], "invalid_syntax"),  # a DMARC record: no fallback
        ([GOOD, "v=DMARC1; p=none"], [GOOD], "multiple_records"),  # step 5 ends discovery: no fallback either
        ([], [GOOD, "v=DMARC1; p=none"], "multiple_records"),
        ([], ["v=DMARC1; p=reject; sp=block"], "no_policy"),
    ],
)
async def test_the_organizational_domain_fallback(
    serve: Serve, at_subdomain: list[str], at_organization: list[str], reason: str
) -> None:
    zones = {
        DOMAIN: zone(
            txt("mail", "v=spf1 -all"),
            *(txt("_dmarc.mail", record) for record in at_subdomain),
            *(txt("_dmarc", record) for record in at_organization),
        )
    }
    assert await _reason(zones, SUBDOMAIN, serve) == reason


async def test_the_fallback_under_a_two_label_public_suffix(serve: Serve) -> None:
    zones = {"example.co.uk": zone(txt("_dmarc", GOOD))}
    assert await _reason(zones, "mail.eu.example.co.uk", serve) == "ok"


async def test_no_fallback_above_the_organizational_domain(serve: Serve) -> None:
    """co.uk is a public suffix: a record there (or at uk) is nobody's organizational policy."""
    zones = {"co.uk": zone(txt("_dmarc", GOOD)), "example.co.uk": zone(txt("www", "x"))}
    assert await _reason(zones, "example.co.uk", serve) == "no_record"


async def test_dns_failure_is_dns_error_and_leaves_spf_alone(serve: Serve) -> None:
    zones = {DOMAIN: zone(txt("@", "v=spf1 -all"), txt("_dmarc", GOOD))}
    server = serve(zones, servfail={f"_dmarc.{DOMAIN}"})
    result = await checker_for(server).check_domain(DOMAIN)
    assert (result.dmarc_correct, result.dmarc_reason) == (False, "dns_error")
    assert result.spf_reason == "no_microsoft_include"  # SPF was still looked up and judged


async def test_dns_failure_at_the_organizational_domain(serve: Serve) -> None:
    zones = {DOMAIN: zone(txt("_dmarc", GOOD))}
    assert await _reason(zones, SUBDOMAIN, serve, servfail={f"_dmarc.{DOMAIN}"}) == "dns_error"


async def test_subdomains_share_the_organizational_lookup(serve: Serve) -> None:
    """Twenty subdomains checked at once ask for _dmarc.<organizational domain> once, in every round.

    Each call is a new request: the shared query is asked afresh (per-call cache), and only once although
    twenty checks need it, at the same moment (in-flight sharing) or later (the call's cache; hence a TTL).
    """
    zones = {DOMAIN: zone("$TTL 3600", txt("_dmarc", GOOD))}
    # Queries are counted at the server: a resolver's retry after a late answer (a busy machine) would count
    # too, so a try waits up to 5 s here; the sharing asserted below does not depend on it.
    alone = serve(zones)
    assert (await checker_for(alone, timeout=5.0, lifetime=10.0).check_domain(f"a.{DOMAIN}")).dmarc_correct
    per_subdomain = alone.queries - 1  # its own queries, without the organizational one
    server = serve(zones)
    checker = checker_for(server, timeout=5.0, lifetime=10.0)
    subdomains = [f"team{n}.{DOMAIN}" for n in range(20)]
    for _ in range(3):
        before = server.queries
        results = await checker.check_domains(subdomains, concurrency=20)
        assert all(result.dmarc_correct for result in results.values())
        assert server.queries - before == len(subdomains) * per_subdomain + 1


@pytest.mark.parametrize(
    ("domain", "organizational"),
    [
        ("contoso.com", "contoso.com"),
        ("mail.contoso.com", "contoso.com"),
        ("a.b.c.contoso.com", "contoso.com"),
        ("mail.example.co.uk", "example.co.uk"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),  # an unknown TLD is a public suffix ("*")
        ("tenant.sub.example.test", "example.test"),
        ("shop.xn--e1afmkfd.xn--p1ai", "xn--e1afmkfd.xn--p1ai"),  # an IDN TLD (.рф), IDNA-encoded
        ("a.foo.github.io", "foo.github.io"),  # the list's private section counts
        ("mail.contoso.onmicrosoft.com", "onmicrosoft.com"),  # not on the list (docs/deliverability.md)
        ("github.io", None),
        ("com", None),
        ("co.uk", None),
    ],
)
def test_organizational_domain(domain: str, organizational: str | None) -> None:
    expected = None if organizational is None else dns.name.from_text(organizational)
    assert organizational_domain(dns.name.from_text(domain)) == expected
