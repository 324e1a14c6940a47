"""Cross-check of the SPF verdicts against pyspf (RFC 7208 check_host) over the same served zones."""

# With a client IP that no term matches, check_host evaluates every term before `all`, so its permerrors
# must be ours; with an IP from Microsoft's record it passes exactly when Microsoft is authorized.

from __future__ import annotations

from typing import Any

import dns.exception
import dns.resolver
import pytest
import spf

from tests.deliverability.spf_corpus import CASES, PERMERRORS, SpfCase
from tests.deliverability.support import DOMAIN, MICROSOFT_IP, OTHER_IP, Serve, checker_for

# Structural walk and check_host differ by design here: check_host expands %{i} and follows the include.
_DIFFERENT_BY_DESIGN = {"include_ip_macro"}


def _oracle_lookup(port: int) -> Any:
    """A pyspf DNSLookup over a resolver of our own, instead of dnspython's global default."""
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = ["127.0.0.1"]
    resolver.port = port

    def lookup(name: str, qtype: str, *_: object) -> list[tuple[tuple[str, str], Any]]:
        try:
            answer = resolver.resolve(name, qtype, lifetime=2.0)
        except (dns.resolver.NoAnswer, dns.resolver.NXDOMAIN):
            return []
        except dns.exception.DNSException as exc:
            raise spf.TempError(str(exc)) from exc
        values = {
            "A": lambda r: r.address,
            "AAAA": lambda r: r.address,
            "MX": lambda r: (r.preference, r.exchange),
            "PTR": lambda r: r.target.to_text(True),
            "TXT": lambda r: r.strings,
        }
        return [((name, qtype), values[qtype](rdata)) for rdata in answer]

    return lookup


def _expected_from_pyspf(port: int, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(spf, "DNSLookup", _oracle_lookup(port))
    other, _ = spf.check2(OTHER_IP, f"postmaster@{DOMAIN}", DOMAIN)
    microsoft, _ = spf.check2(MICROSOFT_IP, f"postmaster@{DOMAIN}", DOMAIN)
    if other in ("none", "permerror", "pass"):
        return {"none": "none", "permerror": "permerror", "pass": "plus_all"}[other]
    return "ok" if microsoft == "pass" else "no_microsoft_include"


@pytest.mark.parametrize(
    "case", [case for case in CASES if case.id not in _DIFFERENT_BY_DESIGN], ids=lambda case: case.id
)
async def test_verdict_agrees_with_pyspf(
    serve: Serve, case: SpfCase, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = serve(case.zones)
    ours = (await checker_for(server).check_domain(DOMAIN)).spf_reason
    ours = "permerror" if ours in PERMERRORS else "none" if ours == "no_record" else ours
    assert ours == _expected_from_pyspf(server.port, monkeypatch)
