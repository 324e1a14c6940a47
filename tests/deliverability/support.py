"""Zone builders shared by the deliverability tests."""

from __future__ import annotations

from collections.abc import Callable

from m365connect.deliverability import DeliverabilityChecker, build_resolver
from m365connect.simulator.dns import DnsServer

Serve = Callable[..., DnsServer]  # the `serve` fixture: zones -> a started DnsServer
DOMAIN = "example.test"
MICROSOFT_INCLUDE = "include:spf.protection.outlook.com"
# Microsoft's record as it was published with a nested include (two DNS-querying terms in all).
MICROSOFT_ZONES = {
    "outlook.com": "\n".join(
        [
            "$TTL 3600",
            'spf.protection TXT "v=spf1 ip4:40.92.0.0/15 ip4:40.107.0.0/16 ip4:52.100.0.0/14 '
            'ip4:104.47.0.0/17 ip6:2a01:111:f400::/48 include:spfd.protection.outlook.com -all"',
            'spfd.protection TXT "v=spf1 ip6:2a01:111:f403::/48 -all"',
        ]
    ),
    # The national clouds' includes (GCC High and DoD; 21Vianet), with documentation ranges.
    "office365.us": '$TTL 3600\nspf.protection TXT "v=spf1 ip4:192.0.2.0/24 -all"\n',
    "partner.outlook.cn": '$TTL 3600\nspf.protection TXT "v=spf1 ip4:198.51.100.0/24 -all"\n',
}
MICROSOFT_IP = "40.92.0.1"
OTHER_IP = "203.0.113.77"


def txt(owner: str, *strings: str) -> str:
    """One TXT record line of zone text, each string quoted."""
    return f"{owner} TXT " + " ".join(f'"{string}"' for string in strings)


def zone(*lines: str) -> str:
    """Zone text from lines."""
    return "\n".join(lines) + "\n"


def checker_for(server: DnsServer, *, timeout: float = 1.0, lifetime: float = 2.0) -> DeliverabilityChecker:
    """A checker whose resolver talks only to the given server."""
    return DeliverabilityChecker(
        build_resolver([f"127.0.0.1:{server.port}"], timeout=timeout, lifetime=lifetime)
    )
