"""SPF and DKIM per national cloud: each cloud's include and DKIM target form count for a tenant of that
cloud only (deliverability/clouds.py), over a real DNS server."""

from __future__ import annotations

import pytest

from m365connect.deliverability import DomainDeliverability
from m365connect.deliverability.clouds import MAIL_CLOUDS
from m365connect.microsoft.clouds import CLOUD_NAMES
from tests.deliverability.support import Serve, checker_for, txt, zone

# cloud -> (the SPF include it publishes, the initial domain its DKIM CNAMEs point under)
SET_UP = {
    "global": ("spf.protection.outlook.com", "tenant.onmicrosoft.com"),
    "usgov": ("spf.protection.office365.us", "tenant.onmicrosoft.us"),
    "usgov-dod": ("spf.protection.office365.us", "tenant.onmicrosoft.us"),
    "china": ("spf.protection.partner.outlook.cn", "tenant.partner.onmschina.cn"),
}


def _domain_set_up_for(cloud: str, key: str) -> tuple[str, dict[str, str]]:
    """A domain published the way Microsoft tells a tenant of `cloud` to, and its zones."""
    include, initial = SET_UP[cloud]
    domain = f"{cloud}.example.test"
    dashed = domain.replace(".", "-")
    return domain, {
        domain: zone(
            txt("@", f"v=spf1 include:{include} -all"),
            *(f"selector{n}._domainkey CNAME selector{n}-{dashed}._domainkey.{initial}." for n in (1, 2)),
            txt("_dmarc", "v=DMARC1; p=reject"),
        ),
        initial: zone(txt(f"selector1-{dashed}._domainkey", f"v=DKIM1; k=rsa; p={key}")),
    }


def test_every_cloud_of_the_service_has_a_row() -> None:
    assert set(MAIL_CLOUDS) == set(CLOUD_NAMES)


@pytest.mark.parametrize("published_for", sorted(SET_UP))
async def test_a_domain_is_correct_for_its_own_cloud_only(
    serve: Serve, key_2048: str, published_for: str
) -> None:
    domain, zones = _domain_set_up_for(published_for, key_2048)
    checker = checker_for(serve(zones))

    verdicts = {cloud: await checker.check_domain(domain, cloud=cloud) for cloud in SET_UP}

    same_records = {c for c in SET_UP if SET_UP[c] == SET_UP[published_for]}  # usgov and usgov-dod agree
    for cloud, verdict in verdicts.items():
        if cloud in same_records:
            assert verdict == DomainDeliverability.from_reasons(spf="ok", dkim="ok", dmarc="ok"), cloud
        else:
            assert (verdict.spf_reason, verdict.dkim_reason, verdict.dmarc_reason) == (
                "no_microsoft_include",
                "cname_not_microsoft",
                "ok",
            ), cloud


async def test_one_call_checks_one_cloud_and_the_next_call_another(serve: Serve, key_2048: str) -> None:
    """The same domain in two bulks of two clouds gets each cloud's verdict (no verdict is carried over)."""
    domain, zones = _domain_set_up_for("usgov", key_2048)
    checker = checker_for(serve(zones))

    usgov = await checker.check_domains([domain], cloud="usgov")
    world = await checker.check_domains([domain])
    usgov_again = await checker.check_domains([domain], cloud="usgov")

    assert (usgov[domain].spf_correct, usgov[domain].dkim_correct) == (True, True)
    assert (world[domain].spf_correct, world[domain].dkim_correct) == (False, False)
    assert usgov_again == usgov


async def test_the_global_cloud_asks_nothing_of_the_national_includes(serve: Serve, key_2048: str) -> None:
    """The global check walks spf.protection.outlook.com only: the national includes failing changes nothing
    (no extra DNS for the global cloud)."""
    domain, zones = _domain_set_up_for("global", key_2048)
    server = serve(zones, servfail={"office365.us", "partner.outlook.cn"})

    result = await checker_for(server).check_domain(domain)

    assert result == DomainDeliverability.from_reasons(spf="ok", dkim="ok", dmarc="ok")


async def test_an_unknown_cloud_is_a_value_error(serve: Serve) -> None:
    with pytest.raises(ValueError, match="mars"):
        await checker_for(serve({})).check_domains(["example.test"], cloud="mars")
