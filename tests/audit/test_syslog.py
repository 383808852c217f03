"""The audit log to syslog, with a real AuditSink and real receivers on loopback sockets:
RFC 5424 messages over UDP (one datagram a record) and TCP (octet-counted frames), the
severity following the decision, the record's JSON line as the message; a receiver that
is down costs nothing but the records it did not take, counted."""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from bastion.audit import AuditSink
from bastion.audit.syslog import SyslogOutput
from bastion.config.audit import AuditSettings, SyslogSettings
from bastion.proxy.metrics import Metrics
from bastion.services import WorkerIdentity
from bastion.testing import free_port, raw_request
from bastion.types import ExchangeRecord
from tests.config.util import errors_of, write

#: <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD BOM MSG (RFC 5424, section 6).
MESSAGE = re.compile(rb"^<(\d+)>1 (\S+) (\S+) (\S+) (\d+) audit - \xef\xbb\xbf(\{.*\})$", re.S)


def _record(n: int, **fields: Any) -> ExchangeRecord:
    base: dict[str, Any] = dict(
        ts=1765100000.123 + n, request_id=f"r-{n}", client="203.0.113.9", method="GET", path=f"/orders/{n}",
        route="getOrder", service="orders", status=200, bytes_in=0, bytes_out=10, seconds=0.0004,
    )
    base.update(fields)
    return ExchangeRecord(**base)


def _write(address: str, records: list[ExchangeRecord], metrics: Metrics | None = None) -> None:
    """Send ``records`` through a sink that writes to syslog only, and close it."""
    settings = AuditSettings(enabled=True, store=False, flush_interval=0.05,
                             syslog=SyslogSettings(address=address, facility="local3", hostname="gw-1"))
    sink = AuditSink(settings, None, WorkerIdentity("test", 0, 1, os.getpid()), metrics or Metrics())
    sink.start()
    for r in records:
        sink(r)
    sink.close()


def _parse(message: bytes, pid: int | None = None) -> tuple[int, bytes, dict[str, Any]]:
    """PRI, TIMESTAMP and the record of one message from host gw-1 by process ``pid`` (default: this one)."""
    match = MESSAGE.match(message)
    assert match is not None, message
    assert (match.group(3), match.group(4)) == (b"gw-1", b"bastion")
    if pid != 0:
        assert int(match.group(5)) == (pid or os.getpid())
    return int(match.group(1)), match.group(2), orjson.loads(match.group(6))


def test_udp_one_datagram_per_record_with_the_decisions_severity() -> None:
    """Each record is one datagram: facility local3 (19), severity informational (6) for an
    allowed request and warning (4) for a blocked one; the timestamp is the record's time
    and the message its JSON line."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver:
        receiver.bind(("127.0.0.1", 0))
        receiver.settimeout(5)
        port = receiver.getsockname()[1]
        _write(f"udp://127.0.0.1:{port}", [_record(1), _record(2, status=403, blocked_by="access",
                                                                 reason="access.denied")])
        received = [_parse(receiver.recv(65535)) for _ in range(2)]
    (pri1, time1, doc1), (pri2, _, doc2) = received
    assert (pri1, pri2) == (19 * 8 + 6, 19 * 8 + 4)
    assert time1 == b"2025-12-07T09:33:21.123Z" and doc1["time"] == time1.decode()
    assert (doc1["request_id"], doc1["decision"]) == ("r-1", "allowed")
    assert (doc2["request_id"], doc2["decision"], doc2["stage"]) == ("r-2", "blocked", "access")


@pytest.fixture
def tcp_receiver() -> Iterator[tuple[int, list[bytes]]]:
    """A TCP receiver on a free port; what each connection sent, once it closed."""
    server = socket.create_server(("127.0.0.1", 0))
    received: list[bytes] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                data = b""
                while chunk := conn.recv(65536):
                    data += chunk
                received.append(data)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1], received
    finally:
        server.close()
        thread.join(5)


def _frames(data: bytes) -> list[bytes]:
    """RFC 6587 octet counting: ``<length> <message>`` after one another."""
    frames = []
    while data:
        length, _, rest = data.partition(b" ")
        frames.append(rest[: int(length)])
        data = rest[int(length):]
    return frames


def test_tcp_octet_counted_frames_in_order(tcp_receiver: tuple[int, list[bytes]]) -> None:
    """Over TCP, 50 records arrive on one connection as 50 octet-counted RFC 5424 frames, in
    the order of the requests, each a whole JSON record (a message may hold a newline-free
    JSON of any length: the count, not a delimiter, frames it)."""
    port, received = tcp_receiver
    _write(f"tcp://127.0.0.1:{port}", [_record(n, user_agent="x" * n) for n in range(50)])
    deadline = time.monotonic() + 5
    while not received and time.monotonic() < deadline:  # the receiver's thread sees the close
        time.sleep(0.05)
    frames = _frames(b"".join(received))
    assert [_parse(f)[2]["request_id"] for f in frames] == [f"r-{n}" for n in range(50)]


def test_a_receiver_that_is_down_is_counted_not_waited_for() -> None:
    """With nothing listening on the TCP address, the sink still takes and closes normally;
    every record is counted in ``bastion_audit_syslog_errors``."""
    metrics = Metrics()
    _write(f"tcp://127.0.0.1:{free_port()}", [_record(n) for n in range(5)], metrics)
    assert metrics.counters["bastion_audit_syslog_errors"] == {(): 5.0}


def test_after_a_failure_the_receiver_is_left_alone_for_a_while() -> None:
    """A send to a TCP receiver that is down fails; one that comes up on that port right
    after is not connected to by the next send, which fails at once (the back-off), so a
    receiver that is down costs the writer one timeout per back-off, not one per batch."""
    port = free_port()
    output = SyslogOutput(SyslogSettings(address=f"tcp://127.0.0.1:{port}", hostname="gw-1"))
    row = {"time": "2025-12-07T09:33:21.123Z", "decision": "allowed", "request_id": "r-1"}
    with pytest.raises(ConnectionRefusedError):
        output.send([row])
    with socket.create_server(("127.0.0.1", port)) as receiver:
        receiver.setblocking(False)
        with pytest.raises(ConnectionError, match="tried again in"):
            output.send([row])
        with pytest.raises(BlockingIOError):  # nothing connected
            receiver.accept()
    output.close()


def test_a_bad_address_is_named(tmp_path: Path) -> None:
    """An address that is not udp:// or tcp:// host and port is a load error naming the file,
    the line and the field, and what to write."""
    path = write(tmp_path, """\
        services: [{name: a, upstream: 'http://127.0.0.1:9', routes: [{path: /, public: true}]}]
        audit:
          enabled: true
          syslog: {address: 'syslog.example.com:514'}
        """)
    (error,) = errors_of(path)
    assert error.startswith(f"{path}:4: audit.syslog.address:")
    assert "udp://host:port, tcp://host:port or tls://host:port, got 'syslog.example.com:514'" in error


def test_a_gateway_sends_every_request_to_syslog() -> None:
    """A real gateway with ``audit.syslog`` on UDP (and no store) sends one RFC 5424 message
    per request, the 404 of an undeclared path included, each naming its request's path."""
    from bastion.testing import GatewayProcess
    from tests.proxy.scripted import ScriptedUpstream

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver, ScriptedUpstream() as upstream:
        receiver.bind(("127.0.0.1", 0))
        receiver.settimeout(10)
        config = {
            "audit": {"enabled": True, "store": False,
                      "syslog": {"address": f"udp://127.0.0.1:{receiver.getsockname()[1]}", "hostname": "gw-1"}},
            "services": [{"name": "api", "upstream": upstream.url,
                          "routes": [{"path": "/orders", "prefix": True, "public": True}]}],
        }
        with GatewayProcess(config) as gw:
            for path in ("/orders/1", "/orders/2", "/nowhere"):
                raw_request(gw.host, gw.port, f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            received = [_parse(receiver.recv(65535), pid=0) for _ in range(3)]  # a worker's pid
    assert sorted((doc["path"], doc["status"], pri % 8) for pri, _, doc in received) == [
        ("/nowhere", 404, 4), ("/orders/1", 200, 6), ("/orders/2", 200, 6),
    ]


@pytest.fixture
def tls_receiver(tmp_path: Path) -> Iterator[tuple[int, Path, list[bytes]]]:
    """A TLS receiver on a free port with a certificate for 127.0.0.1 issued by a throwaway
    CA: its port, the CA file, and what each connection sent once it closed."""
    import ssl

    from bastion.certs import generate_self_signed

    cert, key, ca = tmp_path / "receiver.pem", tmp_path / "receiver.key", tmp_path / "ca.pem"
    generate_self_signed(cert, key, hosts=("127.0.0.1",), ca_path=ca)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server = socket.create_server(("127.0.0.1", 0))
    received: list[bytes] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            try:
                with context.wrap_socket(conn, server_side=True) as tls:
                    data = b""
                    while chunk := tls.recv(65536):
                        data += chunk
                    received.append(data)
            except (ssl.SSLError, OSError):
                received.append(b"<handshake failed>")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1], ca, received
    finally:
        server.close()
        thread.join(5)


def _write_tls(port: int, ca_file: Path | None, records: list[ExchangeRecord], metrics: Metrics) -> None:
    settings = AuditSettings(enabled=True, store=False, flush_interval=0.05, syslog=SyslogSettings(
        address=f"tls://127.0.0.1:{port}", ca_file=ca_file, facility="local3", hostname="gw-1"))
    sink = AuditSink(settings, None, WorkerIdentity("test", 0, 1, os.getpid()), metrics)
    sink.start()
    for r in records:
        sink(r)
    sink.close()


def _wait_for(received: list[bytes]) -> bytes:
    deadline = time.monotonic() + 5
    while not received and time.monotonic() < deadline:  # the receiver's thread sees the close
        time.sleep(0.05)
    return b"".join(received)


def test_tls_octet_counted_frames_to_a_verified_receiver(tls_receiver: tuple[int, Path, list[bytes]]) -> None:
    """Over ``tls://`` (RFC 5425) with the receiver's CA file, 20 records arrive decrypted at a
    real TLS listener as 20 octet-counted RFC 5424 frames, in order, none counted as lost."""
    port, ca, received = tls_receiver
    metrics = Metrics()
    _write_tls(port, ca, [_record(n) for n in range(20)], metrics)
    frames = _frames(_wait_for(received))
    assert [_parse(f)[2]["request_id"] for f in frames] == [f"r-{n}" for n in range(20)]
    assert not metrics.counters.get("bastion_audit_syslog_errors")


def test_tls_refuses_a_receiver_its_ca_did_not_issue(tls_receiver: tuple[int, Path, list[bytes]]) -> None:
    """Without the receiver's CA (the system's CAs do not know the throwaway one), the
    handshake fails: no record is sent in clear or to an unverified peer, and all are counted."""
    port, _, received = tls_receiver
    metrics = Metrics()
    _write_tls(port, None, [_record(n) for n in range(3)], metrics)
    assert b"r-0" not in _wait_for(received)
    assert metrics.counters["bastion_audit_syslog_errors"] == {(): 3.0}


def test_a_ca_file_needs_tls_and_must_exist(tmp_path: Path) -> None:
    """``ca_file`` with a tcp:// address is refused (it would protect nothing), and a ca_file
    that does not exist is a load error naming the field, not a worker that fails to start."""
    (tmp_path / "ca.pem").write_text("")
    path = write(tmp_path, """\
        services: [{name: a, upstream: 'http://127.0.0.1:9', routes: [{path: /, public: true}]}]
        audit:
          enabled: true
          syslog: {address: 'tcp://127.0.0.1:514', ca_file: ca.pem}
        """)
    (error,) = errors_of(path)
    assert error.startswith(f"{path}:4: audit.syslog:") and "ca_file is for a tls:// receiver" in error
    path = write(tmp_path, """\
        services: [{name: a, upstream: 'http://127.0.0.1:9', routes: [{path: /, public: true}]}]
        audit:
          enabled: true
          syslog: {address: 'tls://127.0.0.1:6514', ca_file: missing.pem}
        """)
    (error,) = errors_of(path)
    assert error.startswith(f"{path}:4: audit.syslog.ca_file:") and "missing.pem' not found" in error
