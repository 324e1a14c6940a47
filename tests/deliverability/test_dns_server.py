"""The simulator's DnsServer, queried with dnspython over real sockets."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import dns.asyncquery
import dns.asyncresolver
import dns.message
import dns.nameserver
import dns.rcode
import dns.resolver
import pytest

from m365connect.simulator.dns import DnsServer

ZONES = {
    "contoso.test": """$TTL 300
@ IN SOA ns1 hostmaster 1 3600 600 86400 60
@ TXT "v=spf1 -all"
www A 192.0.2.10
alias CNAME www
outside CNAME target.fabrikam.test.
deep.nested.name A 192.0.2.11
loop1 CNAME loop2
loop2 CNAME loop1
big TXT "%s"
split TXT "one" "two"
"""
    % ("x" * 3000),
    "fabrikam.test": 'target TXT "found it"\n',
}


@pytest.fixture
def server() -> Iterator[DnsServer]:
    with DnsServer(ZONES) as running:
        yield running


def _resolver(server: DnsServer) -> dns.asyncresolver.Resolver:
    resolver = dns.asyncresolver.Resolver(configure=False)
    resolver.nameservers = [dns.nameserver.Do53Nameserver("127.0.0.1", server.port)]
    resolver.timeout, resolver.lifetime = 1.0, 2.0
    return resolver


async def _rcode(server: DnsServer, name: str, rdtype: str) -> tuple[int, list[str]]:
    """The raw rcode and answer of one UDP query."""
    response = await dns.asyncquery.udp(dns.message.make_query(name, rdtype), "127.0.0.1", 1.0, server.port)
    return response.rcode(), [rrset.to_text() for rrset in response.answer]


async def test_nxdomain_only_for_absent_names(server: DnsServer) -> None:
    with pytest.raises(dns.resolver.NXDOMAIN):
        await _resolver(server).resolve("absent.contoso.test", "A")


@pytest.mark.parametrize(("name", "rdtype"), [("www.contoso.test", "TXT"), ("nested.name.contoso.test", "A")])
async def test_nodata_for_existing_names(server: DnsServer, name: str, rdtype: str) -> None:
    answer = await _resolver(server).resolve(name, rdtype, raise_on_no_answer=False)
    assert answer.rrset is None
    assert answer.response.rcode() == dns.rcode.NOERROR


async def test_negative_answers_carry_the_soa(server: DnsServer) -> None:
    response = await dns.asyncquery.udp(
        dns.message.make_query("absent.contoso.test", "A"), "127.0.0.1", 1.0, server.port
    )
    assert response.rcode() == dns.rcode.NXDOMAIN
    assert [rrset.rdtype.name for rrset in response.authority] == ["SOA"]


async def test_names_outside_every_zone_are_nxdomain(server: DnsServer) -> None:
    assert await _rcode(server, "example.org", "A") == (dns.rcode.NXDOMAIN, [])


async def test_cname_is_chased_within_and_across_zones(server: DnsServer) -> None:
    resolver = _resolver(server)
    answer = await resolver.resolve("alias.contoso.test", "A")
    assert [rdata.address for rdata in answer] == ["192.0.2.10"]
    answer = await resolver.resolve("outside.contoso.test", "TXT")
    assert str(answer.canonical_name) == "target.fabrikam.test."
    assert [rdata.strings for rdata in answer] == [(b"found it",)]


async def test_cname_query_returns_the_cname_itself(server: DnsServer) -> None:
    answer = await _resolver(server).resolve("alias.contoso.test", "CNAME")
    assert [str(rdata.target) for rdata in answer] == ["www.contoso.test."]


async def test_cname_loop_is_servfail(server: DnsServer) -> None:
    assert (await _rcode(server, "loop1.contoso.test", "A"))[0] == dns.rcode.SERVFAIL


async def test_names_are_case_insensitive(server: DnsServer) -> None:
    answer = await _resolver(server).resolve("WWW.Contoso.TEST.", "A")
    assert [rdata.address for rdata in answer] == ["192.0.2.10"]


async def test_servfail_set_at_runtime_covers_the_subtree(server: DnsServer) -> None:
    assert (await _rcode(server, "deep.nested.name.contoso.test", "A"))[0] == dns.rcode.NOERROR
    server.servfail.add("nested.name.contoso.test")
    assert (await _rcode(server, "deep.nested.name.contoso.test", "A"))[0] == dns.rcode.SERVFAIL
    assert (await _rcode(server, "www.contoso.test", "A"))[0] == dns.rcode.NOERROR
    server.servfail.clear()
    assert (await _rcode(server, "deep.nested.name.contoso.test", "A"))[0] == dns.rcode.NOERROR


async def test_servfail_reached_through_a_cname(server: DnsServer) -> None:
    server.servfail.add("fabrikam.test")
    assert (await _rcode(server, "outside.contoso.test", "TXT"))[0] == dns.rcode.SERVFAIL


async def test_queries_counts_every_answer(server: DnsServer) -> None:
    before = server.queries
    await _rcode(server, "www.contoso.test", "A")
    await _rcode(server, "absent.contoso.test", "A")
    assert server.queries == before + 2


async def test_long_txt_is_split_truncated_over_udp_and_whole_over_tcp(server: DnsServer) -> None:
    query = dns.message.make_query("big.contoso.test", "TXT")
    with pytest.raises(dns.message.Truncated):
        await dns.asyncquery.udp(query, "127.0.0.1", 1.0, server.port, raise_on_truncation=True)
    answer = await _resolver(server).resolve("big.contoso.test", "TXT")
    strings = answer[0].strings
    assert [len(string) for string in strings] == [255] * 11 + [195]
    assert b"".join(strings) == b"x" * 3000


async def test_multi_string_txt_keeps_its_strings(server: DnsServer) -> None:
    answer = await _resolver(server).resolve("split.contoso.test", "TXT")
    assert answer[0].strings == (b"one", b"two")


async def test_tcp_serves_on_the_same_port(server: DnsServer) -> None:
    response = await dns.asyncquery.tcp(
        dns.message.make_query("www.contoso.test", "A"), "127.0.0.1", 1.0, server.port
    )
    assert [rrset.to_text() for rrset in response.answer] == ["www.contoso.test. 300 IN A 192.0.2.10"]


def test_garbage_is_ignored_and_serving_goes_on(server: DnsServer) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(1.0)
        sock.sendto(b"\x00garbage", ("127.0.0.1", server.port))
        sock.sendto(dns.message.make_query("www.contoso.test", "A").to_wire(), ("127.0.0.1", server.port))
        reply = dns.message.from_wire(sock.recv(4096))
    assert reply.rcode() == dns.rcode.NOERROR
    assert server.queries == 1


def test_stop_joins_threads_and_frees_the_port() -> None:
    before = set(threading.enumerate())
    server = DnsServer(ZONES)
    server.start()
    port = server.port
    with socket.create_connection(("127.0.0.1", port), timeout=1.0):  # an idle TCP client
        server.stop()
    assert set(threading.enumerate()) == before
    server.stop()  # idempotent
    with DnsServer(ZONES, port=port) as again:
        assert again.port == port


def test_port_before_start_is_an_error() -> None:
    with pytest.raises(RuntimeError):
        _ = DnsServer(ZONES).port


async def test_edns_payload_size_is_honoured_over_udp(server: DnsServer) -> None:
    query = dns.message.make_query("big.contoso.test", "TXT", use_edns=0, payload=4096)
    response = await dns.asyncquery.udp(query, "127.0.0.1", 1.0, server.port, raise_on_truncation=True)
    assert b"".join(response.answer[0][0].strings) == b"x" * 3000


@pytest.mark.parametrize(
    "zones",
    [
        {"contoso.test": "www.fabrikam.test. A 192.0.2.1\n"},
        {"contoso.test": "www A not-an-address\n"},
        {"contoso.test": "www 300\n"},
    ],
    ids=["outside_the_zone", "bad_rdata", "truncated_line"],
)
def test_bad_zone_text_is_a_value_error(zones: dict[str, str]) -> None:
    with pytest.raises(ValueError, match=r"contoso\.test"):
        DnsServer(zones)
