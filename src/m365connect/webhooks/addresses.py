"""Where a webhook may be sent: the URL rules and the address classes refused (SSRF protection).

A webhook URL is chosen by an API client, and the service POSTs to it from inside the operator's network,
so a URL must never reach what only the service can reach: the loopback interface, private networks, the
cloud metadata endpoint. The rules (docs/api.md, "Webhook URLs"):
- `https` on port 443, no user name or password, a host name or an IP literal;
- every address the host resolves to is public (`refusal` below); one non-public address refuses the URL,
  since an attacker controls which of them a client would try;
- checked when the URL is saved and again at each delivery, whose connection goes to an address vetted
  by that very check (webhooks/transport.py), so a DNS answer that changes in between cannot help.
With `M365CONNECT_WEBHOOK_ALLOW_PRIVATE_NETWORKS` plain http, any port and private addresses are allowed;
the metadata addresses stay refused even then (nothing legitimate listens there).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

import dns.asyncresolver
import dns.exception
import dns.rdatatype

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# The instance metadata service of AWS, GCP, Azure, OpenStack... (IPv4) and AWS's IPv6 one.
METADATA_ADDRESSES = frozenset(
    {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
)
# Shared address space of carrier-grade NAT (RFC 6598): Python's is_private leaves it out.
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
# NAT64 prefixes (RFC 6052 well-known, RFC 8215 local use): the IPv4 address is the last 32 bits.
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


class UrlRefused(Exception):
    """The URL (or the address its host resolved to) may not receive webhooks; `reason` is one short line
    for the delivery log (it names an address, never a secret)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (IPv4-mapped, 6to4, NAT64), or None."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if any(address in prefix for prefix in _NAT64):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def refusal(address: IPAddress, *, allow_private: bool) -> str | None:
    """Why this address may not receive webhooks, or None when it may."""
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if isinstance(address, ipaddress.IPv6Address):
        inner = embedded_ipv4(address)
        if inner is not None:
            why = refusal(inner, allow_private=allow_private)
            return f"{why} (inside an IPv6 address)" if why else None
    if allow_private:
        return None
    for name, matched in (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("carrier-grade NAT", address in _CGNAT),
        ("reserved", address.is_reserved),
        ("private", address.is_private),
        ("not globally routable", not address.is_global),
    ):
        if matched:
            return f"a {name} address"
    return None


@dataclass(frozen=True)
class Target:
    """A parsed webhook URL: what to connect to, and the name TLS and Host keep."""

    scheme: str
    host: str  # lower case; an IPv6 literal without brackets
    port: int


def parse_url(url: str, *, allow_private: bool) -> Target:
    """The URL's parts, or UrlRefused naming the rule it breaks (nothing is resolved here)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise UrlRefused("not a valid URL") from None
    allowed = ("https", "http") if allow_private else ("https",)
    if parts.scheme not in allowed:
        raise UrlRefused("the URL must start with https://")
    if parts.username is not None or parts.password is not None:
        raise UrlRefused("the URL must not contain a user name or password")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise UrlRefused("the URL has no host")
    default = 443 if parts.scheme == "https" else 80
    if port is not None and port != default and not allow_private:
        raise UrlRefused("the URL must use port 443")
    return Target(scheme=parts.scheme, host=host, port=port or default)


def literal_address(host: str) -> IPAddress | None:
    """The host as an IP address when it is one."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


class HostResolver(Protocol):
    """Turns a host name into its addresses (empty: it does not resolve)."""

    async def resolve(self, host: str) -> list[IPAddress]: ...


class SystemResolver:
    """The operating system's resolver (getaddrinfo: /etc/hosts, nsswitch), as any HTTP client uses."""

    def __init__(self, *, seconds: float) -> None:
        # getaddrinfo has no deadline of its own (resolv.conf's timeouts and attempts add up).
        self._seconds = seconds

    async def resolve(self, host: str) -> list[IPAddress]:
        """Every A and AAAA address of `host`; [] when it does not resolve in time."""
        try:
            async with asyncio.timeout(self._seconds):
                infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError, TimeoutError):
            return []
        return _unique(ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos)


class DnsResolver:
    """The nameservers of M365CONNECT_DNS_NAMESERVERS (the same DNS the deliverability checks ask)."""

    def __init__(self, resolver: dns.asyncresolver.Resolver) -> None:
        self._resolver = resolver

    async def resolve(self, host: str) -> list[IPAddress]:
        """Every A and AAAA address of `host`; [] when neither answers."""
        found: list[IPAddress] = []
        for rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
            try:
                answer = await self._resolver.resolve(host, rdtype, search=False)
            except (dns.exception.DNSException, UnicodeError):
                continue
            found.extend(ipaddress.ip_address(record.to_text()) for record in answer)
        return _unique(found)


def _unique(addresses: Iterable[IPAddress]) -> list[IPAddress]:
    seen: list[IPAddress] = []
    for address in addresses:
        if address not in seen:
            seen.append(address)
    return seen


async def vet(url: str, *, resolver: HostResolver, allow_private: bool) -> tuple[Target, list[IPAddress]]:
    """The URL's target and its addresses, every one allowed; UrlRefused otherwise."""
    target = parse_url(url, allow_private=allow_private)
    literal = literal_address(target.host)
    addresses: Sequence[IPAddress] = [literal] if literal is not None else await resolver.resolve(target.host)
    if not addresses:
        raise UrlRefused(f"{target.host} does not resolve")
    for address in addresses:
        why = refusal(address, allow_private=allow_private)
        if why is not None:
            raise UrlRefused(f"{target.host} resolves to {address}, {why}")
    return target, list(addresses)
