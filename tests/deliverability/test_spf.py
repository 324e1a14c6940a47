"""spf_correct end to end: zones served by a real DNS server, checked through the public checker."""

from __future__ import annotations

import pytest

from tests.deliverability.spf_corpus import CASES, SpfCase
from tests.deliverability.support import DOMAIN, MICROSOFT_INCLUDE, Serve, checker_for, txt, zone


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
async def test_spf_reason(serve: Serve, case: SpfCase) -> None:
    result = await checker_for(serve(case.zones)).check_domain(DOMAIN)
    assert (result.spf_correct, result.spf_reason) == (case.reason == "ok", case.reason)


async def test_big_record_arrives_over_tcp_after_truncation(serve: Serve) -> None:
    ranges = " ".join(f"ip4:198.51.{n}.0/24" for n in range(80))
    record = f"v=spf1 {ranges} {MICROSOFT_INCLUDE} -all"
    assert len(record) > 1200
    server = serve({DOMAIN: zone(txt("@", record))})
    result = await checker_for(server).check_domain(DOMAIN)
    assert (result.spf_correct, result.spf_reason) == (True, "ok")


async def test_dns_error_inside_the_tree_is_dns_error(serve: Serve) -> None:
    zones = {DOMAIN: zone(txt("@", f"v=spf1 include:_spf.example.test {MICROSOFT_INCLUDE} -all"))}
    server = serve(zones, servfail={"_spf.example.test"})
    result = await checker_for(server).check_domain(DOMAIN)
    assert (result.spf_correct, result.spf_reason) == (False, "dns_error")


async def test_microsoft_record_failing_is_dns_error(serve: Serve) -> None:
    server = serve({DOMAIN: zone(txt("@", f"v=spf1 {MICROSOFT_INCLUDE} -all"))}, servfail={"outlook.com"})
    result = await checker_for(server).check_domain(DOMAIN)
    assert result.spf_reason == "dns_error"
