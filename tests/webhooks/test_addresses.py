"""The SSRF rules as pure functions: which addresses and URLs may receive webhooks."""

from __future__ import annotations

import ipaddress

import pytest

from m365connect.webhooks.addresses import SystemResolver, UrlRefused, parse_url, refusal, vet
from tests.webhooks.support import FakeResolver

REFUSED = [
    ("127.0.0.1", "loopback"),
    ("127.200.0.1", "loopback"),
    ("::1", "loopback"),
    ("10.1.2.3", "private"),
    ("172.16.0.1", "private"),
    ("192.168.1.1", "private"),
    ("169.254.169.254", "metadata"),
    ("169.254.10.1", "link-local"),
    ("fe80::1", "link-local"),
    ("fd00:ec2::254", "metadata"),
    ("fc00::1", "private"),
    ("100.64.0.1", "carrier-grade NAT"),
    ("224.0.0.1", "multicast"),
    ("ff02::1", "multicast"),
    ("0.0.0.0", "unspecified"),
    ("::", "unspecified"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "reserved"),
    ("198.51.100.25", "private"),  # TEST-NET-2 (documentation)
    ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped
    ("::ffff:169.254.169.254", "metadata"),
    ("2002:7f00:1::", "loopback"),  # 6to4 of 127.0.0.1
    ("2002:a00:1::", "private"),  # 6to4 of 10.0.0.1
    ("64:ff9b::10.0.0.1", "private"),  # NAT64 well-known prefix
    ("64:ff9b::169.254.169.254", "metadata"),
    ("64:ff9b:1::a00:1", "private"),  # NAT64 local-use prefix
    ("2001:db8::1", "private"),  # documentation
]
PUBLIC = ["93.184.215.14", "8.8.8.8", "2606:4700:4700::1111", "64:ff9b::808:808", "2002:808:808::"]


@pytest.mark.parametrize(("address", "kind"), REFUSED)
def test_non_public_addresses_are_refused(address: str, kind: str) -> None:
    why = refusal(ipaddress.ip_address(address), allow_private=False)
    assert why is not None
    assert kind in why


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_are_allowed(address: str) -> None:
    assert refusal(ipaddress.ip_address(address), allow_private=False) is None


@pytest.mark.parametrize("address", ["127.0.0.1", "10.0.0.1", "::1", "fc00::1"])
def test_private_networks_are_allowed_when_the_operator_says_so(address: str) -> None:
    assert refusal(ipaddress.ip_address(address), allow_private=True) is None


@pytest.mark.parametrize("address", ["169.254.169.254", "fd00:ec2::254", "::ffff:169.254.169.254"])
def test_metadata_addresses_stay_refused_even_then(address: str) -> None:
    assert "metadata" in (refusal(ipaddress.ip_address(address), allow_private=True) or "")


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://hooks.example.com/x", "https"),
        ("ftp://hooks.example.com/x", "https"),
        ("https://user:pw@hooks.example.com/x", "user name"),
        ("https://user@hooks.example.com/x", "user name"),
        ("https://hooks.example.com:8443/x", "port 443"),
        ("https://hooks.example.com:99999/x", "not a valid URL"),
        ("https:///x", "no host"),
        ("hooks.example.com/x", "https"),
        ("https://[::1/x", "not a valid URL"),
    ],
)
def test_url_rules(url: str, reason: str) -> None:
    with pytest.raises(UrlRefused) as refused:
        parse_url(url, allow_private=False)
    assert reason in refused.value.reason


def test_allowing_private_networks_allows_plain_http_and_other_ports() -> None:
    target = parse_url("http://127.0.0.1:8080/hook", allow_private=True)
    assert (target.scheme, target.host, target.port) == ("http", "127.0.0.1", 8080)
    assert parse_url("https://hooks.example.com/x", allow_private=False).port == 443


async def test_one_non_public_address_among_public_ones_refuses_the_name() -> None:
    resolver = FakeResolver()
    resolver.set("mixed.example.com", ["93.184.215.14", "10.0.0.7"])
    with pytest.raises(UrlRefused, match=r"10\.0\.0\.7, a private address"):
        await vet("https://mixed.example.com/", resolver=resolver, allow_private=False)
    resolver.set("public.example.com", ["93.184.215.14", "2606:4700:4700::1111"])
    target, addresses = await vet("https://public.example.com/", resolver=resolver, allow_private=False)
    assert target.host == "public.example.com"
    assert [str(a) for a in addresses] == ["93.184.215.14", "2606:4700:4700::1111"]


async def test_ip_literals_are_not_looked_up_and_names_that_do_not_resolve_are_refused() -> None:
    resolver = FakeResolver()
    with pytest.raises(UrlRefused, match="loopback"):
        await vet("https://[::1]/hook", resolver=resolver, allow_private=False)
    with pytest.raises(UrlRefused, match="does not resolve"):
        await vet("https://nowhere.example.com/", resolver=resolver, allow_private=False)
    assert resolver.asked == ["nowhere.example.com"]


async def test_the_system_resolver_reads_hosts_and_localhost_is_refused() -> None:
    """Without M365CONNECT_DNS_NAMESERVERS the operating system resolves (getaddrinfo: /etc/hosts)."""
    system = SystemResolver(seconds=2)
    addresses = await system.resolve("localhost")
    assert addresses
    assert all(address.is_loopback for address in addresses)
    with pytest.raises(UrlRefused, match="loopback"):
        await vet("https://localhost/hook", resolver=system, allow_private=False)
    assert await system.resolve("nothing.invalid") == []
