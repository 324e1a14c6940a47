"""The SPF verdict: a structural walk of the whole record tree, as API.md §3 defines `spf_correct`."""

# The walk visits every term a receiver could evaluate (those before the first `all`, and `redirect=` when
# the record has no `all`), follows every include and redirect, and counts DNS-querying terms and void
# lookups cumulatively. It does not evaluate check_host() for a client IP (docs/deliverability.md).

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import dns.name
import dns.rdata
import dns.rdatatype
import dns.rdtypes.txtbase

from m365connect.deliverability.resolver import DnsError, Records
from m365connect.deliverability.spf_syntax import (
    Mechanism,
    SpfSyntaxError,
    expand,
    parse_record,
    spf_records,
    to_name,
)

MAX_LOOKUPS = 10
MAX_VOID_LOOKUPS = 2
MAX_MX_RECORDS = 10

Chain = tuple[dns.name.Name, ...]
Lookup = Callable[[dns.name.Name, dns.rdatatype.RdataType], Awaitable[Records]]


class SpfFailure(Exception):
    """The record tree is invalid or unfit; reason is the machine-readable spf_reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class _Walk:
    """The state of one walk: counters and what was found on pass-qualified paths."""

    lookup: Lookup
    origin: dns.name.Name
    microsoft_include: dns.name.Name  # the include of the credential's cloud (deliverability/clouds.py)
    lookups: int = 0
    void_lookups: int = 0
    microsoft: bool = False
    plus_all: bool = False

    async def record(self, domain: dns.name.Name, text: str, *, authorizing: bool, chain: Chain) -> None:
        """Walk one record; authorizing says whether its matches would make the root pass."""
        try:
            record = parse_record(text)
        except SpfSyntaxError:
            raise SpfFailure("syntax_error") from None
        for mechanism in record.evaluated:
            await self.mechanism(domain, mechanism, authorizing=authorizing, chain=chain)
        if record.effective_redirect is not None:
            self.count_lookup()
            target = self.target(record.effective_redirect, domain)
            if target is not None:
                await self.follow(target, authorizing=authorizing, chain=chain)

    async def mechanism(
        self,
        domain: dns.name.Name,
        mechanism: Mechanism,
        *,
        authorizing: bool,
        chain: Chain,
    ) -> None:
        """Count and check one mechanism, following includes."""
        passes = authorizing and mechanism.qualifier == "+"
        if mechanism.name == "all":
            self.plus_all = self.plus_all or passes
        if mechanism.name in ("all", "ip4", "ip6"):
            return
        self.count_lookup()
        target = self.target(mechanism.target, domain)
        if target is None or mechanism.name == "ptr":  # ptr needs the client IP: nothing to resolve
            return
        if mechanism.name == "include":
            self.microsoft = self.microsoft or (passes and target == self.microsoft_include)
            await self.follow(target, authorizing=passes, chain=chain)
        elif mechanism.name == "mx":
            records = await self.lookup(target, dns.rdatatype.MX)
            if len(records.rdatas) > MAX_MX_RECORDS:
                raise SpfFailure("too_many_mx_records")
            self.count_void(records)
        else:  # a, exists
            await self.addresses(target, both_families=mechanism.name == "a")

    async def addresses(self, name: dns.name.Name, *, both_families: bool) -> None:
        """Resolve A (and AAAA for `a`) records; a name with no address is a void lookup."""
        families = (dns.rdatatype.A, dns.rdatatype.AAAA) if both_families else (dns.rdatatype.A,)
        lookups = (self.lookup(name, rdtype) for rdtype in families)
        rdatas: list[dns.rdata.Rdata] = []
        for answer in await asyncio.gather(*lookups, return_exceptions=True):  # none is left running
            if isinstance(answer, BaseException):
                raise answer
            rdatas.extend(answer.rdatas)
        self.count_void(Records(tuple(rdatas)))

    async def follow(self, target: dns.name.Name, *, authorizing: bool, chain: Chain) -> None:
        """Fetch and walk an include or redirect target; it must hold exactly one SPF record."""
        if target in chain:
            raise SpfFailure("loop")
        records = await fetch_spf(self.lookup, target)
        if not records:
            raise SpfFailure("include_without_spf")
        await self.record(target, records[0], authorizing=authorizing, chain=(*chain, target))

    def target(self, spec: str | None, domain: dns.name.Name) -> dns.name.Name | None:
        """Expand a domain-spec (None: the current domain); None when it needs a per-message macro."""
        if spec is None:
            return domain
        values = {"d": domain.to_text(omit_final_dot=True), "o": self.origin.to_text(omit_final_dot=True)}
        expanded = expand(spec, values)
        try:
            return None if expanded is None else to_name(expanded)
        except SpfSyntaxError:
            raise SpfFailure("syntax_error") from None

    def count_lookup(self) -> None:
        self.lookups += 1
        if self.lookups > MAX_LOOKUPS:
            raise SpfFailure("too_many_lookups")

    def count_void(self, records: Records) -> None:
        if not records.rdatas:
            self.void_lookups += 1
            if self.void_lookups > MAX_VOID_LOOKUPS:
                raise SpfFailure("too_many_void_lookups")


async def fetch_spf(lookup: Lookup, name: dns.name.Name) -> list[str]:
    """Return the name's SPF records; raise SpfFailure if it has more than one (§4.5)."""
    answer = await lookup(name, dns.rdatatype.TXT)
    txts = [rdata.strings for rdata in answer.rdatas if isinstance(rdata, dns.rdtypes.txtbase.TXTBase)]
    records = spf_records(txts)
    if len(records) > 1:
        raise SpfFailure("multiple_records")
    return records


async def check_spf(lookup: Lookup, domain: dns.name.Name, *, microsoft_include: dns.name.Name) -> str:
    """Return the spf_reason for a domain: "ok", or why it is not correct; `microsoft_include` is the
    Microsoft include of the sending tenant's cloud."""
    try:
        records = await fetch_spf(lookup, domain)
        if not records:
            return "no_record"
        walk = _Walk(lookup, origin=domain, microsoft_include=microsoft_include)
        await walk.record(domain, records[0], authorizing=True, chain=(domain,))
    except SpfFailure as failure:
        return failure.reason
    except DnsError:
        return "dns_error"
    if walk.plus_all:
        return "plus_all"
    return "ok" if walk.microsoft else "no_microsoft_include"
