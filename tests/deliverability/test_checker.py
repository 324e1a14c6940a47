"""The checker as callers use it: both flags together, failures, batching and caching."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from m365connect.deliverability import (
    DeliverabilityChecker,
    DomainDeliverability,
    build_resolver,
    normalize_domain,
)
from tests.deliverability.support import DOMAIN, MICROSOFT_INCLUDE, Serve, checker_for, txt, zone


def _correct_domains(key: str, *domains: str) -> dict[str, str]:
    """Zones where each domain is correct for SPF, DKIM (new form, selector1 active) and DMARC."""
    zones: dict[str, str] = {"dkim.mail.microsoft": ""}
    for domain in domains:
        target = "selector{n}-" + domain.replace(".", "-") + "._domainkey.contoso.n-v1.dkim.mail.microsoft."
        zones[domain] = zone(
            txt("@", f"v=spf1 {MICROSOFT_INCLUDE} -all"),
            *(f"selector{n}._domainkey CNAME {target.format(n=n)}" for n in (1, 2)),
            txt("_dmarc", "v=DMARC1; p=reject"),
        )
        zones["dkim.mail.microsoft"] += zone(txt(target.format(n=1), f"v=DKIM1; k=rsa; p={key}"))
    return zones


OK = DomainDeliverability.from_reasons(spf="ok", dkim="ok", dmarc="ok")
DNS_ERROR = DomainDeliverability.from_reasons(spf="dns_error", dkim="dns_error", dmarc="dns_error")


async def test_a_correct_domain(serve: Serve, key_2048: str) -> None:
    assert await checker_for(serve(_correct_domains(key_2048, DOMAIN))).check_domain(DOMAIN) == OK


async def test_servfail_on_the_domain_makes_every_flag_false(serve: Serve, key_2048: str) -> None:
    server = serve(_correct_domains(key_2048, DOMAIN), servfail={DOMAIN})
    result = await checker_for(server).check_domain(DOMAIN)
    assert result == DNS_ERROR


async def test_dead_nameserver_gives_dns_error_quickly(dead_nameserver: int) -> None:
    resolver = build_resolver([f"127.0.0.1:{dead_nameserver}"], timeout=0.1, lifetime=0.3)
    started = time.monotonic()
    result = await DeliverabilityChecker(resolver).check_domain(DOMAIN)
    assert result == DNS_ERROR
    assert time.monotonic() - started < 3.0


async def test_no_nameservers_reachable_at_all_is_dns_error(dead_nameserver: int) -> None:
    resolver = build_resolver([f"127.0.0.1:{dead_nameserver}"], timeout=0.1, lifetime=0.3)
    resolver.nameservers = []
    result = await DeliverabilityChecker(resolver).check_domain(DOMAIN)
    assert result == DNS_ERROR


@pytest.mark.parametrize("domain", ["", ".", "a..b", "x" * 64 + ".test", "exa mple" * 40])
async def test_invalid_domains_are_false_without_a_query(serve: Serve, domain: str) -> None:
    server = serve({})
    result = await checker_for(server).check_domain(domain)
    invalid = "invalid_domain"
    assert result == DomainDeliverability.from_reasons(spf=invalid, dkim=invalid, dmarc=invalid)
    assert server.queries == 0


async def test_domains_are_normalized(serve: Serve, key_2048: str) -> None:
    checker = checker_for(serve(_correct_domains(key_2048, "xn--bcher-kva.test")))
    assert await checker.check_domain("Bücher.TEST.") == OK
    assert await checker.check_domain("XN--BCHER-KVA.test") == OK


async def test_check_domains_checks_each_distinct_domain_once(serve: Serve, key_2048: str) -> None:
    once = serve(_correct_domains(key_2048, DOMAIN))
    await checker_for(once).check_domain(DOMAIN)
    server = serve(_correct_domains(key_2048, DOMAIN))
    inputs = [DOMAIN, "Example.Test.", DOMAIN, "example.TEST"]
    results = await checker_for(server).check_domains(inputs, concurrency=4)
    assert results == dict.fromkeys(inputs, OK)
    assert server.queries == once.queries


async def test_check_domains_mixes_verdicts(serve: Serve, key_2048: str) -> None:
    server = serve({**_correct_domains(key_2048, DOMAIN), "other.test": zone(txt("@", "v=spf1 -all"))})
    results = await checker_for(server).check_domains([DOMAIN, "other.test", "a..b"], concurrency=1)
    assert results[DOMAIN] == OK
    other = results["other.test"]
    assert (other.spf_reason, other.dkim_reason, other.dmarc_reason) == (
        "no_microsoft_include",
        "not_configured",
        "no_record",
    )
    assert results["a..b"].spf_reason == "invalid_domain"


async def test_check_domains_rejects_a_zero_bound(serve: Serve) -> None:
    with pytest.raises(ValueError, match="concurrency"):
        await checker_for(serve({})).check_domains([DOMAIN], concurrency=0)


async def test_microsoft_record_is_fetched_once_per_call(serve: Serve, key_2048: str) -> None:
    alone = serve(_correct_domains(key_2048, "one.test"))
    assert await checker_for(alone).check_domain("one.test") == OK
    server = serve(_correct_domains(key_2048, "one.test", "two.test"))
    results = await checker_for(server).check_domains(["one.test", "two.test"])
    assert results == {"one.test": OK, "two.test": OK}
    assert server.queries == 2 * alone.queries - 2  # spf.protection and spfd.protection asked once


async def test_each_call_asks_dns_afresh(serve: Serve, key_2048: str) -> None:
    """One checker serves every request of the service; a record fixed between two requests shows at once."""
    server = serve(_correct_domains(key_2048, DOMAIN))
    checker = checker_for(server)
    assert await checker.check_domains([DOMAIN]) == {DOMAIN: OK}
    first = server.queries
    assert await checker.check_domains([DOMAIN]) == {DOMAIN: OK}
    assert server.queries == 2 * first


async def test_the_callers_resolver_is_left_alone(serve: Serve, key_2048: str) -> None:
    server = serve(_correct_domains(key_2048, DOMAIN))
    resolver = build_resolver([f"127.0.0.1:{server.port}"])
    assert await DeliverabilityChecker(resolver).check_domain(DOMAIN) == OK
    assert resolver.cache is None


@settings(max_examples=300, database=None, deadline=None)
@given(st.text())
def test_normalize_domain_never_raises(text: str) -> None:
    normalized = normalize_domain(text)
    assert normalized is None or (normalized == normalized.lower() and not normalized.endswith("."))


def test_normalize_domain() -> None:
    assert normalize_domain(" Bücher.Example. ") == "xn--bcher-kva.example"
    assert normalize_domain("example.test..") is None


async def test_a_domain_too_long_for_selector_names(serve: Serve) -> None:
    domain = ".".join(["a" * 60] * 4) + ".test"
    result = await checker_for(serve({})).check_domain(domain)
    assert (result.spf_reason, result.dkim_reason, result.dmarc_reason) == (
        "no_record",
        "not_configured",
        "no_record",
    )
