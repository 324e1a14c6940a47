"""The RFC 7208 test suite (pyspf 2.0.14's copy, tests/deliverability/data) where our checks overlap it."""

# Our checker judges a record's structure, not check_host() for one IP. Per case, the overlap is:
# - expected permerror (syntax, lookup or void limits, multiple records, include target without a
#   record): our spf_reason must be one of those failures;
# - expected pass/fail/softfail/neutral: the record is valid, so we must report no syntax or limit error;
# - expected none: the domain has no record (or is not a valid domain name);
# - expected temperror: a lookup timed out, which we report as dns_error.
# A case the suite allows several results for ([permerror, fail]) accepts the union. Records using ptr,
# exp= or per-message macros (%{i}, %{s}, %{l}, %{h}) stay in: we count such terms without resolving them,
# and the record must still parse and stay within the limits. A case is excluded only where check_host's
# answer depends on the client IP in a way the structural walk cannot follow; _EXCLUDED lists them.

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from dnslib import AAAA, CNAME, MX, QTYPE, RCODE, RR, TXT, A, DNSLabel, DNSRecord

from m365connect.deliverability import DeliverabilityChecker, build_resolver
from m365connect.simulator.dns import DnsServer, _Zones

_SUITE = Path(__file__).parent / "data" / "rfc7208-tests.yml"
_FAILURES = frozenset(
    {
        "syntax_error",
        "too_many_lookups",
        "too_many_void_lookups",
        "multiple_records",
        "include_without_spf",
        "loop",
        "too_many_mx_records",
    }
)
_VALID = frozenset({"ok", "no_microsoft_include", "plus_all"})  # a valid record, judged on its content
_EXPECTED = {
    "permerror": _FAILURES,
    "pass": _VALID,
    "fail": _VALID,
    "softfail": _VALID,
    "neutral": _VALID,
    "none": frozenset({"no_record", "invalid_domain"}),
    "temperror": frozenset({"dns_error"}),
}

# Cases outside the overlap, by test name, with the reason.
_EXCLUDED: dict[str, str] = {
    # check_host stops at the first match: `ip4:1.2.3.4` matches before `mx`, the 11th DNS-querying term.
    # We count every term before `all` whatever the IP, so this record is too_many_lookups for us
    # (an intentional difference, docs/deliverability.md "How the tree is walked").
    "include-at-limit": "the 11th lookup is after the term that matches this IP",
}


@dataclass(frozen=True)
class _Case:
    name: str
    scenario: int
    domain: str
    results: frozenset[str]


def _load() -> tuple[list[dict[str, Any]], list[_Case]]:
    with _SUITE.open("rb") as file:
        scenarios = [s for s in yaml.safe_load_all(file) if s]
    cases = []
    for index, scenario in enumerate(scenarios):
        for name, test in scenario["tests"].items():
            result = test["result"]
            results = frozenset(result if isinstance(result, list) else [result])
            mailfrom = test.get("mailfrom") or ""  # empty or a bare local part: the HELO identity
            domain = mailfrom.rpartition("@")[2] if "@" in mailfrom else test["helo"]
            cases.append(_Case(name, index, domain, results))
    return scenarios, cases


_SCENARIOS, _CASES = _load()


def _records(name: str, entries: list[Any]) -> Iterator[RR]:
    """The scenario's records for one name; SPF (type 99) records are copied to TXT when TXT is absent."""
    label = DNSLabel(name)
    has_txt = any(isinstance(e, dict) and "TXT" in e for e in entries)
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        for rtype, value in entry.items():
            if rtype in ("TXT", "SPF"):
                if value == "NONE" or (rtype == "SPF" and has_txt):
                    continue
                strings = [value] if isinstance(value, str) else value or [""]  # no strings can't be sent
                yield RR(label, QTYPE.TXT, rdata=TXT([s.encode("utf-8") for s in strings]), ttl=60)
            elif rtype == "A":
                yield RR(label, QTYPE.A, rdata=A(value), ttl=60)
            elif rtype == "AAAA":
                yield RR(label, QTYPE.AAAA, rdata=AAAA(value), ttl=60)
            elif rtype == "MX":
                yield RR(label, QTYPE.MX, rdata=MX(value[1], value[0]), ttl=60)
            elif rtype == "CNAME":
                yield RR(label, QTYPE.CNAME, rdata=CNAME(value), ttl=60)
            # PTR records only matter for the ptr mechanism, which needs the client IP


class _SuiteServer(DnsServer):
    """DnsServer whose zones are swapped per scenario, with the suite driver's TIMEOUT semantics.

    pyspf's driver (test/testspf.py) times a query out when the name's TIMEOUT entry comes before any
    record of the queried type (generated TXT copies come last), and for absent names under `error.`.
    DnsServer's own servfail set covers whole subtrees and all types, which is coarser than that.
    """

    def __init__(self) -> None:
        super().__init__({})
        self.answered: dict[str, set[int]] = {}  # name with TIMEOUT -> the types it still answers

    def serve_scenario(self, scenario: dict[str, Any]) -> None:
        """Replace the zones with the scenario's zonedata, in one root zone."""
        zones = _Zones({"": ""})
        self.answered = {}
        for name, entries in (scenario.get("zonedata") or {}).items():
            key = name.rstrip(".").lower()
            if "TIMEOUT" in entries:
                before = entries[: entries.index("TIMEOUT")]
                self.answered[key] = {rr.rtype for rr in _records(key, before)}
            for rr in _records(key, entries):
                zones._add(rr, "")
            zones._add_name(key, "")
        self._zones = zones

    def _answer(self, request: DNSRecord) -> DNSRecord:
        name = str(request.q.qname).rstrip(".").lower()
        answered = self.answered.get(name)
        timed_out = answered is not None and request.q.qtype not in answered
        if timed_out or (name.startswith("error.") and name not in self._zones.names):
            reply = request.reply(ra=1, aa=0)
            reply.header.rcode = RCODE.SERVFAIL
            return reply
        answer: DNSRecord = super()._answer(request)
        return answer


@pytest.fixture(scope="module")
def server() -> Iterator[_SuiteServer]:
    dns_server = _SuiteServer()
    dns_server.start()
    yield dns_server
    dns_server.stop()


_CHECKED = [case for case in _CASES if case.name not in _EXCLUDED]


def test_suite_is_loaded_and_most_cases_are_checked() -> None:
    counts = f"{len(_CASES)} cases, {len(_CHECKED)} checked, {len(_EXCLUDED)} excluded"
    assert set(_EXCLUDED) <= {case.name for case in _CASES}
    assert (len(_CASES), len(_CHECKED)) == (203, 202), counts  # the whole suite of the 2014.04 release


@pytest.mark.parametrize("case", _CHECKED, ids=[case.name for case in _CHECKED])
async def test_case(server: _SuiteServer, case: _Case) -> None:
    server.serve_scenario(_SCENARIOS[case.scenario])
    checker = DeliverabilityChecker(build_resolver([f"127.0.0.1:{server.port}"], timeout=1.0, lifetime=2.0))
    result = await checker.check_domain(case.domain)
    allowed = frozenset().union(*(_EXPECTED[r] for r in case.results))
    assert result.spf_reason in allowed, (case.domain, sorted(case.results))
