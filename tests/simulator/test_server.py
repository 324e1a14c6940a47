"""FakeMicrosoft's lifecycle: TLS with its own CA, DNS, clean shutdown, state directory and the CLI runner."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
from pathlib import Path

import dns.resolver
import httpx
import pytest

from m365connect.simulator import FakeMicrosoft, load_scenario
from m365connect.simulator.threaded import bind
from tests.processes import default_sigint

from .example import CONTOSO, EXAMPLE, token_form


def _client(fake: FakeMicrosoft) -> httpx.Client:
    return httpx.Client(base_url=fake.base_url, verify=ssl.create_default_context(cafile=str(fake.ca_path)))


def _refused(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


def test_stop_closes_a_connection_the_client_keeps_open() -> None:
    """A client that keeps an idle keep-alive TLS connection pooled and unread (azure-identity does after a
    failed token request) never answers the server's close_notify: stop must still close it, not leave the
    socket open when the server's loop ends."""
    with FakeMicrosoft(load_scenario(EXAMPLE)) as fake:
        port = int(fake.base_url.rsplit(":", 1)[1])
        context = ssl.create_default_context(cafile=str(fake.ca_path))
        raw = socket.create_connection(("127.0.0.1", port), timeout=20)
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            tls.sendall(b"GET /_simulator/stats HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            answer = b""
            while not answer.endswith(b"}"):  # the whole JSON answer; the connection stays open
                answer += tls.recv(65536)
            assert answer.startswith(b"HTTP/1.1 200")
            fake.stop()

            # The TLS layer may be closed politely (close_notify) while the server's TCP socket stays open:
            # read the TCP socket itself. EOF or a reset: closed; a timeout: left open.
            try:
                assert tls.recv(65536) == b""
                data = tls.unwrap().recv(65536)
            except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
                data = b""
            assert data == b""


def test_start_and_stop_leave_no_threads_or_listeners() -> None:
    threads_before = set(threading.enumerate())

    with FakeMicrosoft(load_scenario(EXAMPLE)) as fake:
        port = int(fake.base_url.rsplit(":", 1)[1])
        dns_port = fake.dns_port
        with _client(fake) as client:
            assert client.get("/_simulator/stats").status_code == 200

    assert set(threading.enumerate()) == threads_before
    assert _refused(port)
    assert _refused(dns_port)
    with pytest.raises(RuntimeError, match="not started"):
        _ = fake.dns_port


def test_listener_is_a_tcp_socket_so_asyncio_turns_nagle_off() -> None:
    listener = bind("127.0.0.1", 0)
    try:
        assert listener.proto == socket.IPPROTO_TCP  # with proto 0, every response waits for a delayed ACK
    finally:
        listener.close()


def test_the_certificate_is_only_trusted_with_the_generated_ca() -> None:
    with FakeMicrosoft(EXAMPLE) as fake, httpx.Client(verify=ssl.create_default_context()) as untrusting:
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            untrusting.get(f"{fake.base_url}/_simulator/stats")
        with _client(fake) as trusting:
            assert trusting.get("/_simulator/stats").status_code == 200


def test_state_dir_keeps_the_ca_across_restarts(tmp_path: Path) -> None:
    with FakeMicrosoft(EXAMPLE, state_dir=tmp_path) as first:
        ca = first.ca_path.read_bytes()
    with FakeMicrosoft(EXAMPLE, state_dir=tmp_path) as second, _client(second) as client:
        assert second.ca_path == tmp_path / "ca.pem"
        assert second.ca_path.read_bytes() == ca
        assert client.get("/_simulator/stats").status_code == 200
    assert (tmp_path / "server-key.pem").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "ca-key.pem").stat().st_mode & 0o777 == 0o600


def test_instances_are_independent() -> None:
    with FakeMicrosoft(EXAMPLE) as one, FakeMicrosoft(EXAMPLE) as two, _client(one) as a, _client(two) as b:
        token = a.post(f"/{CONTOSO}/oauth2/v2.0/token", data=token_form("connector")).json()["access_token"]
        one.faults.graph_malformed_rate = 1.0

        assert b.get("/v1.0/users", headers={"Authorization": f"Bearer {token}"}).status_code == 401
        assert two.faults.graph_malformed_rate == 0.0
        assert (one.stats.token_requests, two.stats.token_requests) == (1, 0)


def test_dns_serves_the_scenario_zones_over_udp_and_tcp(fake: FakeMicrosoft) -> None:
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = ["127.0.0.1"]
    resolver.port = fake.dns_port

    udp = resolver.resolve("contoso.com", "TXT")
    tcp = resolver.resolve("selector1._domainkey.contoso.com", "TXT", tcp=True)

    assert b"v=spf1 include:spf.protection.outlook.com -all" in [b"".join(r.strings) for r in udp]
    assert str(tcp.canonical_name) == "selector1-contoso-com._domainkey.contoso.n-v1.dkim.mail.microsoft."
    with pytest.raises(dns.resolver.NoNameservers):
        resolver.resolve("broken.example", "TXT")


def test_serve_forever_prints_where_it_listens_and_stops_on_ctrl_c() -> None:
    code = f"import m365connect.simulator as s; s.serve_forever({str(EXAMPLE)!r}, port=0, dns_port=0)"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env, preexec_fn=default_sigint
    ) as process:
        try:
            assert process.stdout is not None
            lines = []
            while not lines or not lines[-1].startswith("Press Ctrl-C"):
                line = process.stdout.readline()
                assert line, "serve_forever exited early"
                lines.append(line)
            base_url = next(line.split()[-1] for line in lines if "base URL" in line)
            ca_path = next(line.split()[-1] for line in lines if "CA certificate" in line)
            with httpx.Client(verify=ssl.create_default_context(cafile=ca_path)) as client:
                assert client.get(f"{base_url}/_simulator/stats").status_code == 200
            process.send_signal(signal.SIGINT)
            remaining, _ = process.communicate(timeout=10)
        finally:
            if process.poll() is None:  # leaving the `with` waits for it: never for ever
                process.kill()

    assert process.returncode == 0
    assert "stopped" in remaining
    assert any("M365CONNECT_CA_BUNDLE=" in line for line in lines)
