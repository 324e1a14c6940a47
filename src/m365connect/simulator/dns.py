"""A recursive-resolver-like DNS server over fixed zones, serving UDP and TCP on one port."""

# Like a recursive resolver, not an authoritative server: CNAMEs are followed across all zones, NXDOMAIN
# only for absent names (empty non-terminals are NODATA), negative answers carry the SOA (so resolvers cache
# them), UDP answers over 512 bytes (or the client's EDNS size) are truncated so the client retries over TCP,
# and names outside every zone are NXDOMAIN: the simulated internet holds only these zones.

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from dnslib import QTYPE, RCODE, RR, TXT, DNSError, DNSLabel, DNSRecord
from dnslib.dns import CLASS, ZoneParser

_MAX_CNAME_HOPS = 16
_MAX_TXT_STRING = 255
_UDP_DEFAULT_SIZE = 512
_TCP_IDLE_SECONDS = 1.0
_BIND_ATTEMPTS = 20


def _key(name: object) -> str:
    """Return a name as lowercase text without the trailing dot."""
    return str(name).rstrip(".").lower()


class _ZoneParser(ZoneParser):  # type: ignore[misc]  # dnslib ships no types
    """dnslib's zone parser, except TXT strings over 255 bytes are split into several strings."""

    def parse_rr(self, rr: list[str]) -> Any:
        ttl = rr[1].isdigit()
        rclass = rr[1 + ttl] in ("IN", "CH", "HS")
        if rr[1 + ttl + rclass] != "TXT":
            return super().parse_rr(rr)
        data = [s.encode() for s in rr[2 + ttl + rclass :]]
        chunks = [d[i : i + _MAX_TXT_STRING] for d in data for i in range(0, max(len(d), 1), _MAX_TXT_STRING)]
        return RR(
            rname=self.parse_label(rr[0]),
            ttl=int(rr[1]) if ttl else self.ttl,
            rclass=getattr(CLASS, rr[1 + ttl]) if rclass else CLASS.IN,
            rtype=QTYPE.TXT,
            rdata=TXT(chunks),
        )


class _Zones:
    """The records of all zones, indexed by owner name."""

    def __init__(self, zones: Mapping[str, str]) -> None:
        self.soa: dict[str, list[RR]] = {}  # zone origin -> its SOA, put in negative answers
        self.records: dict[str, list[RR]] = {}
        self.names: set[str] = set()
        for origin, text in zones.items():
            zone = _key(origin)
            self.soa.setdefault(zone, [])
            try:
                rrs = list(_ZoneParser(text, origin=DNSLabel(zone + ".")))
            except Exception as exc:  # dnslib raises DNSError, ValueError, IndexError... on bad text
                raise ValueError(f"zone {zone!r}: {exc}") from exc
            for rr in rrs:
                self._add(rr, zone)

    def _add(self, rr: RR, zone: str) -> None:
        owner = _key(rr.rname)
        if not (owner == zone or owner.endswith("." + zone) or not zone):
            raise ValueError(f"zone {zone!r}: {owner!r} is outside the zone")
        self.records.setdefault(owner, []).append(rr)
        if rr.rtype == QTYPE.SOA and owner == zone:
            self.soa[zone] = [rr]
        self._add_name(owner, zone)

    def _add_name(self, owner: str, zone: str) -> None:
        """Record a name and its ancestors down to the zone origin (empty non-terminals exist)."""
        labels = owner.split(".")
        for i in range(len(labels)):
            name = ".".join(labels[i:])
            self.names.add(name)
            if name == zone:
                break

    def zone_of(self, name: str) -> str | None:
        """Return the closest enclosing zone origin, or None for a name outside every zone."""
        labels = name.split(".")
        for i in range(len(labels) + 1):
            if (candidate := ".".join(labels[i:])) in self.soa:
                return candidate
        return None


class DnsServer:
    """Recursive-resolver-like DNS server over fixed zones, UDP and TCP on one port."""

    def __init__(
        self,
        zones: Mapping[str, str],
        *,
        servfail: Iterable[str] = (),
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self._zones = _Zones(zones)
        self.servfail: set[str] = {_key(name) for name in servfail}
        self.queries = 0
        self._host = host
        self._requested_port = port
        self._lock = threading.Lock()
        self._udp: socket.socket | None = None
        self._tcp: socket.socket | None = None
        self._wake: tuple[socket.socket, socket.socket] | None = None
        self._loop: threading.Thread | None = None
        self._connections: dict[socket.socket, threading.Thread] = {}

    @property
    def port(self) -> int:
        """The port both UDP and TCP listen on (valid after start())."""
        if self._udp is None:
            raise RuntimeError("DnsServer is not started")
        return int(self._udp.getsockname()[1])

    def start(self) -> None:
        """Bind UDP and TCP on the same port and serve them from a background thread."""
        if self._loop is not None:
            raise RuntimeError("DnsServer is already started")
        self._udp, self._tcp = self._bind()
        self._wake = socket.socketpair()
        self._loop = threading.Thread(
            target=self._serve, args=(self._udp, self._tcp, self._wake[0]), name=f"dns-server-{self.port}"
        )
        self._loop.start()

    def stop(self) -> None:
        """Stop serving, join every thread and close every socket."""
        if self._loop is None or self._wake is None:
            return
        self._wake[1].send(b"x")
        self._loop.join()
        with self._lock:
            connections = dict(self._connections)
        for conn, thread in connections.items():
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            thread.join()
        for sock in (self._udp, self._tcp, *self._wake):
            if sock is not None:
                sock.close()
        self._udp = self._tcp = self._wake = self._loop = None

    def __enter__(self) -> DnsServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _bind(self) -> tuple[socket.socket, socket.socket]:
        """Bind a UDP and a TCP socket to one port; with port 0, retry until both get the same one."""
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        for _ in range(_BIND_ATTEMPTS):
            udp = socket.socket(family, socket.SOCK_DGRAM)
            tcp = socket.socket(family, socket.SOCK_STREAM)
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # restart despite TIME_WAIT
            try:
                udp.bind((self._host, self._requested_port))
                tcp.bind((self._host, udp.getsockname()[1]))
                tcp.listen(16)
            except OSError:
                udp.close()
                tcp.close()
                if self._requested_port:
                    raise
                continue
            return udp, tcp
        raise OSError(f"no port free for both UDP and TCP on {self._host}")

    def _serve(self, udp: socket.socket, tcp: socket.socket, wake: socket.socket) -> None:
        """Serve UDP queries inline and TCP connections on their own threads until woken."""
        with selectors.DefaultSelector() as selector:
            for sock in (udp, tcp, wake):
                selector.register(sock, selectors.EVENT_READ)
            while True:
                for key, _ in selector.select():
                    if key.fileobj is wake:
                        return
                    if key.fileobj is udp:
                        self._serve_udp(udp)
                    else:
                        self._accept_tcp(tcp)

    def _serve_udp(self, udp: socket.socket) -> None:
        try:
            data, client = udp.recvfrom(65535)
        except OSError:
            return
        reply = self._reply(data, udp=True)
        if reply is not None:
            with contextlib.suppress(OSError):
                udp.sendto(reply, client)

    def _accept_tcp(self, tcp: socket.socket) -> None:
        try:
            conn, _ = tcp.accept()
        except OSError:
            return
        conn.settimeout(_TCP_IDLE_SECONDS)
        thread = threading.Thread(target=self._serve_tcp, args=(conn,), name="dns-server-tcp")
        with self._lock:
            self._connections[conn] = thread
        thread.start()

    def _serve_tcp(self, conn: socket.socket) -> None:
        """Answer length-prefixed queries on one connection until EOF, idle timeout or stop()."""
        try:
            with conn:
                while (header := _recv_exact(conn, 2)) is not None:
                    data = _recv_exact(conn, int.from_bytes(header, "big"))
                    reply = None if data is None else self._reply(data, udp=False)
                    if reply is None:
                        return
                    conn.sendall(len(reply).to_bytes(2, "big") + reply)
        except OSError:
            return
        finally:
            with self._lock:
                self._connections.pop(conn, None)

    def _reply(self, data: bytes, *, udp: bool) -> bytes | None:
        """Return the wire reply to one query, or None for a packet that is not a query."""
        try:
            request = DNSRecord.parse(data)
        except DNSError:
            return None
        if request.header.qr or not request.questions:
            return None
        try:
            reply = self._answer(request)
            wire: bytes = reply.pack()
        except Exception:  # a reply dnslib cannot build must not stop the server
            reply = _failure(request, RCODE.SERVFAIL)
            wire = reply.pack()
        with self._lock:
            self.queries += 1
        offered = [rr.rclass for rr in request.ar if rr.rtype == QTYPE.OPT]  # the client's EDNS size
        if udp and len(wire) > max([_UDP_DEFAULT_SIZE, *offered]):
            reply.rr, reply.auth, reply.ar = [], [], []
            reply.header.tc = 1
            wire = reply.pack()
        return wire

    def _answer(self, request: DNSRecord) -> DNSRecord:
        """Answer the first question the way a recursive resolver would."""
        reply = request.reply(ra=1, aa=0)
        qtype = request.q.qtype
        name = _key(request.q.qname)
        for _ in range(_MAX_CNAME_HOPS):
            if self._is_servfail(name):
                return _failure(request, RCODE.SERVFAIL)
            zone = self._zones.zone_of(name)
            if zone is None or name not in self._zones.names:
                reply.header.rcode = RCODE.NXDOMAIN
                reply.auth.extend(self._zones.soa.get(zone or "", []))
                return reply
            here = self._zones.records.get(name, [])
            hits = [rr for rr in here if qtype in (rr.rtype, QTYPE.ANY)]
            cnames = [rr for rr in here if rr.rtype == QTYPE.CNAME]
            if hits or not cnames:
                reply.rr.extend(hits)
                reply.auth.extend([] if hits else self._zones.soa[zone])
                return reply
            reply.rr.append(cnames[0])
            name = _key(cnames[0].rdata.label)
        return _failure(request, RCODE.SERVFAIL)  # a CNAME loop, or a chain too long

    def _is_servfail(self, name: str) -> bool:
        labels = name.split(".")
        return any(".".join(labels[i:]) in self.servfail for i in range(len(labels)))


def _failure(request: DNSRecord, rcode: int) -> DNSRecord:
    reply = request.reply(ra=1, aa=0)
    reply.header.rcode = rcode
    return reply


def _recv_exact(conn: socket.socket, size: int) -> bytes | None:
    """Read exactly size bytes, or return None at EOF."""
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data
