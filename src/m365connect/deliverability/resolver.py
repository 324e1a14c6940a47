"""The DNS layer: building the resolver, a TTL-capped cache, and one lookup that classifies outcomes."""

from __future__ import annotations

import ipaddress
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass

import dns.asyncresolver
import dns.exception
import dns.message
import dns.name
import dns.nameserver
import dns.rdata
import dns.rdatatype
import dns.rdtypes.ANY.CNAME
import dns.resolver

EDNS_PAYLOAD = 1232
_BRACKETED = re.compile(r"^\[(?P<host>[^\]]+)\](?::(?P<port>[0-9]+))?$")
_HOST_PORT = re.compile(r"^(?P<host>[^:]+)(?::(?P<port>[0-9]+))?$")


class DnsError(Exception):
    """A lookup with no definitive answer: timeout, SERVFAIL or REFUSED everywhere, no nameservers."""


@dataclass(frozen=True)
class Records:
    """A definitive answer: the records (empty for NODATA) and whether the name does not exist.

    A recursive resolver follows CNAMEs: `rdatas` and `nxdomain` then describe the end of the chain,
    and `cname` is the target of the CNAME at the queried name itself (None when there is none).
    """

    rdatas: tuple[dns.rdata.Rdata, ...]
    nxdomain: bool = False
    cname: dns.name.Name | None = None


class CappedLRUCache(dns.resolver.LRUCache):
    """An LRU cache that keeps no answer longer than max_ttl, so a DNS fix shows up quickly."""

    def __init__(self, max_size: int = 10_000, *, max_ttl: float = 300.0) -> None:
        super().__init__(max_size)
        self.max_ttl = max_ttl

    def put(self, key: dns.resolver.CacheKey, value: dns.resolver.Answer) -> None:
        """Store an answer, expiring it at most max_ttl seconds from now."""
        value.expiration = min(value.expiration, time.time() + self.max_ttl)
        super().put(key, value)


def parse_nameserver(entry: str) -> dns.nameserver.Do53Nameserver:
    """Parse "host", "host:port", "[v6]:port" or a bare IPv6 address; raise ValueError otherwise."""
    text = entry.strip()
    match = _BRACKETED.match(text) or (None if text.count(":") > 1 else _HOST_PORT.match(text))
    host, port = (match["host"], match["port"]) if match else (text, None)
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"nameserver {entry!r}: the host must be an IP address") from None
    if match and match.re is _BRACKETED and address.version != 6:
        raise ValueError(f"nameserver {entry!r}: only IPv6 addresses go in brackets")
    number = 53 if port is None else int(port)
    if not 0 < number < 65536:
        raise ValueError(f"nameserver {entry!r}: port out of range")
    return dns.nameserver.Do53Nameserver(str(address), number)


def build_resolver(
    nameservers: Sequence[str] | None, *, timeout: float = 2.0, lifetime: float = 5.0
) -> dns.asyncresolver.Resolver:
    """Build an async resolver for the given nameservers, or the system's when None."""
    if isinstance(nameservers, str):
        raise ValueError("nameservers must be a sequence of entries, not one string")
    if nameservers is None:
        try:
            resolver = dns.asyncresolver.Resolver()
        except dns.resolver.NoResolverConfiguration:
            # No usable /etc/resolv.conf: start anyway; every check then reports dns_error.
            resolver = dns.asyncresolver.Resolver(configure=False)
    else:
        if not nameservers:
            raise ValueError("nameservers is empty: give at least one, or None for the system resolver")
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = [parse_nameserver(entry) for entry in nameservers]
    resolver.timeout = timeout
    resolver.lifetime = lifetime
    # EDNS(0) with the DNS Flag Day 2020 payload: a DKIM key behind its CNAME (about 600 bytes) then
    # fits in one UDP answer instead of a truncated one retried over TCP.
    resolver.use_edns(0, 0, EDNS_PAYLOAD)
    return resolver


async def lookup(
    resolver: dns.asyncresolver.Resolver, name: dns.name.Name, rdtype: dns.rdatatype.RdataType
) -> Records:
    """Resolve one name and type; NXDOMAIN and NODATA are answers, anything else raises DnsError."""
    try:
        answer = await resolver.resolve(name, rdtype, search=False, raise_on_no_answer=False)
    except dns.resolver.NXDOMAIN as exc:
        return Records((), nxdomain=True, cname=_cname_at(exc.kwargs.get("responses", {}).get(name), name))
    except (dns.exception.DNSException, OSError) as exc:
        raise DnsError(f"{name} {rdtype.name}: {exc}") from exc
    return Records(tuple(answer), cname=_cname_at(answer.response, name))


def _cname_at(response: dns.message.Message | None, name: dns.name.Name) -> dns.name.Name | None:
    """The target of the CNAME owned by `name` in a response's answer section, if any."""
    if response is None:
        return None
    for rrset in response.answer:
        if rrset.name == name and rrset.rdtype == dns.rdatatype.CNAME:
            for rdata in rrset:
                if isinstance(rdata, dns.rdtypes.ANY.CNAME.CNAME):
                    return rdata.target
    return None
