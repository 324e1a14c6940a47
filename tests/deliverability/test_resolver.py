"""build_resolver's nameserver parsing, and the TTL-capped cache."""

from __future__ import annotations

import time

import dns.asyncresolver
import dns.name
import dns.nameserver
import dns.rdataclass
import dns.rdatatype
import pytest

from m365connect.deliverability import build_resolver
from m365connect.deliverability.resolver import CappedLRUCache
from m365connect.simulator.dns import DnsServer
from tests.deliverability.support import Serve


@pytest.mark.parametrize(
    ("entry", "address", "port"),
    [
        ("192.0.2.1", "192.0.2.1", 53),
        ("192.0.2.1:5353", "192.0.2.1", 5353),
        (" 127.0.0.1:53 ", "127.0.0.1", 53),
        ("[::1]:5353", "::1", 5353),
        ("[2001:db8::1]", "2001:db8::1", 53),
        ("2001:db8::1", "2001:db8::1", 53),
    ],
)
def test_nameserver_entries(entry: str, address: str, port: int) -> None:
    resolver = build_resolver([entry], timeout=0.5, lifetime=1.5)
    (nameserver,) = resolver.nameservers
    assert isinstance(nameserver, dns.nameserver.Do53Nameserver)
    assert (nameserver.address, nameserver.port) == (address, port)
    assert (resolver.timeout, resolver.lifetime) == (0.5, 1.5)


@pytest.mark.parametrize(
    "entry",
    [
        "dns.example",
        "192.0.2.1:",
        "192.0.2.1:0",
        "192.0.2.1:65536",
        "192.0.2.1:x",
        "[192.0.2.1]:53",
        "[::1",
        "",
        "1.2.3",
    ],
)
def test_malformed_entries_raise_value_error(entry: str) -> None:
    with pytest.raises(ValueError, match="nameserver"):
        build_resolver([entry])


@pytest.mark.parametrize("nameservers", [[], "127.0.0.1"])
def test_empty_or_string_nameservers_raise_value_error(nameservers: list[str] | str) -> None:
    with pytest.raises(ValueError, match="nameservers"):
        build_resolver(nameservers)


def test_none_means_the_system_resolver() -> None:
    resolver = build_resolver(None, timeout=1.0, lifetime=3.0)
    assert isinstance(resolver, dns.asyncresolver.Resolver)
    assert (resolver.timeout, resolver.lifetime) == (1.0, 3.0)


async def test_cache_caps_long_ttls(serve: Serve) -> None:
    server: DnsServer = serve({"example.test": "$TTL 86400\nwww A 192.0.2.1\n"})
    resolver = build_resolver([f"127.0.0.1:{server.port}"])
    resolver.cache = CappedLRUCache(max_ttl=60.0)
    answer = await resolver.resolve("www.example.test", "A")
    assert answer.rrset is not None
    assert answer.rrset.ttl == 86400
    key = (dns.name.from_text("www.example.test"), dns.rdatatype.A, dns.rdataclass.IN)
    cached = resolver.cache.get(key)
    assert cached is not None
    assert cached.expiration <= time.time() + 60.0
    await resolver.resolve("www.example.test", "A")
    assert server.queries == 1
