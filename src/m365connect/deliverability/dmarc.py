"""The DMARC verdict: policy discovery (RFC 7489 §6.6.3), as API.md §3 defines `dmarc_correct`."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable

import dns.name
import dns.rdatatype
import dns.rdtypes.txtbase
from publicsuffixlist import PublicSuffixList

from m365connect.deliverability.dmarc_syntax import is_dmarc_record, judge_record
from m365connect.deliverability.resolver import DnsError, Records

Lookup = Callable[[dns.name.Name, dns.rdatatype.RdataType], Awaitable[Records]]
_DMARC_LABEL = "_dmarc"


@functools.cache
def _public_suffixes() -> PublicSuffixList:
    """The public suffix list shipped inside the package (it never downloads; docs/decisions.md).

    Read-only data that costs about 80 ms to parse, so it is loaded once per process, on first use, like
    a module constant rather than a per-request object.
    """
    return PublicSuffixList(accept_unknown=True)


def organizational_domain(domain: dns.name.Name) -> dns.name.Name | None:
    """RFC 7489 §3.2: the public suffix plus one label; None when the domain is itself a public suffix.

    A name under a TLD the list does not know counts that TLD as a public suffix (the list's "*" rule),
    and the list's private section counts too (RFC 7489 uses the whole list).
    """
    text = domain.to_text(omit_final_dot=True)
    private = _public_suffixes().privatesuffix(text)
    return None if private is None else dns.name.from_text(private)


async def check_dmarc(lookup: Lookup, domain: dns.name.Name) -> str:
    """Return the dmarc_reason for a domain: "ok", or why it is not correct.

    §6.6.3: the records at `_dmarc.<domain>`; only when none of them is a DMARC record, those at
    `_dmarc.<organizational domain>`. Two or more DMARC records end discovery (step 5): no fallback.
    """
    try:
        records = await _dmarc_records(lookup, domain)
        inherited = False
        if not records:
            organizational = organizational_domain(domain)
            if organizational is not None and organizational != domain:
                records = await _dmarc_records(lookup, organizational)
                inherited = True
    except DnsError:
        return "dns_error"
    if not records:
        return "no_record"
    if len(records) > 1:
        return "multiple_records"
    return judge_record(records[0], subdomain=inherited).reason


async def _dmarc_records(lookup: Lookup, domain: dns.name.Name) -> list[str]:
    """The TXT records at `_dmarc.<domain>` that are DMARC records (§6.6.3 steps 2 and 4)."""
    try:
        name = dns.name.from_text(_DMARC_LABEL, domain)
    except dns.name.NameTooLong:  # a domain close to 253 characters: `_dmarc.` under it cannot exist
        return []
    answer = await lookup(name, dns.rdatatype.TXT)
    texts = [
        # RFC 7489 §6.3: the strings of one TXT record are joined without a separator; latin-1 keeps
        # any byte, and a non-ASCII one then fails the syntax instead of raising.
        b"".join(rdata.strings).decode("latin-1")
        for rdata in answer.rdatas
        if isinstance(rdata, dns.rdtypes.txtbase.TXTBase)
    ]
    return [text for text in texts if is_dmarc_record(text)]
