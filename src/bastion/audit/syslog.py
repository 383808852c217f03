"""The audit log to a syslog receiver: RFC 5424 messages over UDP (RFC 5426, one datagram a
record), TCP (RFC 6587 octet counting: ``<length> <message>``) or TLS (RFC 5425: the same
octet-counted frames, over a TLS connection whose certificate is verified: chained to the
configured CA file, or the system's CAs, and issued for the receiver's host name).

Written by the audit writer thread only, with a socket timeout: a receiver that is slow or
down costs the writer at most that long per batch, and the batch's records are then not
sent to syslog (counted and logged; the store and the JSON lines still have them). After a
failure the receiver is tried again ``RETRY_SECONDS`` later; the batches meanwhile are not
sent (and counted).
"""

from __future__ import annotations

import errno
import os
import socket
import ssl
import time
from collections.abc import Sequence
from typing import Any

import orjson

from bastion.config.audit import FACILITIES, SyslogSettings

#: Seconds a connect or a send may take before the batch is given up.
TIMEOUT = 1.0
#: After a failure, seconds before the receiver is tried again: a receiver that is down
#: costs the writer one timeout per this many seconds, not one per batch.
RETRY_SECONDS = 5.0
#: The RFC 5424 severity of a record, by its decision: a block is a warning, a flag a notice.
SEVERITIES = {"blocked": 4, "monitored": 5, "allowed": 6}
#: MSG is UTF-8, so it starts with a byte order mark (RFC 5424, section 6.4).
BOM = b"\xef\xbb\xbf"


def _header_field(text: str, limit: int) -> str:
    """A header field: printable US-ASCII without spaces, at most ``limit`` characters."""
    cleaned = "".join(c for c in text if "!" <= c <= "~")[:limit]
    return cleaned or "-"


def _client_context(settings: SyslogSettings) -> ssl.SSLContext:
    """A TLS 1.2+ client context that verifies the receiver (RFC 5425, section 5.1)."""
    cafile = str(settings.ca_file) if settings.ca_file is not None else None
    context = ssl.create_default_context(cafile=cafile)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class SyslogOutput:
    """Sends audit rows to the receiver ``settings.address`` names."""

    def __init__(self, settings: SyslogSettings) -> None:
        self.settings = settings
        self.transport, self.host, self.port = settings.parts()
        self._facility = FACILITIES[settings.facility] * 8
        hostname = settings.hostname or socket.gethostname()
        self._prefix = " ".join((
            _header_field(hostname, 255),
            _header_field(settings.app_name, 48),
            str(os.getpid()),
            "audit",  # MSGID
            "-",  # no STRUCTURED-DATA: the message is the record
        )).encode()
        self._sock: socket.socket | None = None
        self._tls = _client_context(settings) if self.transport == "tls" else None
        #: When the receiver may be tried again after a failure (monotonic seconds).
        self._retry_at = 0.0

    def message(self, row: dict[str, Any]) -> bytes:
        """The RFC 5424 message of one audit row: its JSON line as the MSG."""
        pri = self._facility + SEVERITIES.get(str(row.get("decision")), 6)
        return b"<%d>1 %s %s %s%s" % (pri, str(row["time"]).encode(), self._prefix, BOM, orjson.dumps(row))

    def send(self, rows: Sequence[dict[str, Any]]) -> int:
        """Send every row; how many were too large for a datagram (over UDP). ``OSError`` when
        the receiver could not take them, or failed less than ``RETRY_SECONDS`` ago (the
        connection is closed then, and opened again at the first call after that)."""
        too_large = 0
        try:
            sock = self._connected()
            if self.transport == "udp":
                for row in rows:
                    try:
                        sock.send(self.message(row))
                    except OSError as exc:
                        if exc.errno != errno.EMSGSIZE:
                            raise
                        too_large += 1
            else:
                frames = []
                for row in rows:
                    message = self.message(row)
                    frames.append(b"%d %s" % (len(message), message))
                sock.sendall(b"".join(frames))
        except OSError:
            self.close()
            self._retry_at = time.monotonic() + RETRY_SECONDS
            raise
        return too_large

    def _connected(self) -> socket.socket:
        sock = self._sock
        if sock is None:
            wait = self._retry_at - time.monotonic()
            if wait > 0:
                raise ConnectionError(f"the receiver failed; tried again in {wait:.1f} s")
            kind = socket.SOCK_DGRAM if self.transport == "udp" else socket.SOCK_STREAM
            family, _, _, _, address = socket.getaddrinfo(self.host, self.port, type=kind)[0]
            sock = socket.socket(family, kind)
            sock.settimeout(TIMEOUT)
            try:
                sock.connect(address)
                if self._tls is not None:  # the handshake, within the same timeout
                    sock = self._tls.wrap_socket(sock, server_hostname=self.host)
            except OSError:  # ssl.SSLError included: a receiver we cannot verify gets nothing
                sock.close()
                raise
            self._sock = sock
        return sock

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
