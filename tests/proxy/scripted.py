"""A scripted upstream for the proxy tests: a threaded HTTP/1.1 server on loopback.

It records every request exactly as it arrived (raw bytes per connection too, so a test
can prove that a refused request never reached it) and answers according to the path:

==================  ==========================================================================
``/chunked``        a chunked response in three chunks
``/slow?ms=N``      waits N ms, then echoes
``/close``          a body without Content-Length, delimited by closing the connection
``/big?n=N``        N bytes of :func:`pattern` with Content-Length, written in 64 KiB pieces
``/bigchunked?n=N`` the same N bytes chunked (64 KiB chunks, no Content-Length)
``/parts?p=A&p=B``  a chunked response of one chunk per ``p``, each sent on its own (5 ms apart)
``/gz?text=T&n=K``  :func:`gz_text` (T in K numbered lines; ``same=1``: T K times), gzip-encoded,
                    with Content-Length; ``chunked=1``: chunked
                    in 16 KiB pieces (``gap=MS`` apart); ``cut=1``: the gzip data loses its last 8 bytes (invalid);
                    ``enc=E``: announced as Content-Encoding E instead of gzip
``/status/N``       status N with a small JSON body
``/head-test``      ``hello world`` with Content-Length (none on HEAD, length kept)
``/drop``           closes the connection without answering
``/drop-early``     closes the connection right after the head, before reading the body
``/garbage``        an invalid response (non-numeric Content-Length)
``/bad-framing``    a response with both Content-Length and Transfer-Encoding
``/flaky``          closes without answering when it is not the connection's first request
``/hop``            a response carrying hop-by-hop headers (and one named in Connection)
``/health``         200, or 503 while :attr:`ScriptedUpstream.healthy` is false
``/slowread``       reads the request body slowly (64 KiB per 10 ms), then echoes
anything else       echoes the request as JSON (method, target, headers, body digest, ...)
==================  ==========================================================================
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

_PATTERN = bytes(range(256)) * 256  # 64 KiB


def pattern(n: int) -> bytes:
    """The ``n`` bytes ``/big?n=`` answers with (a repeating 0..255 ramp)."""
    reps, rest = divmod(n, len(_PATTERN))
    return _PATTERN * reps + _PATTERN[:rest]


def gz_text(word: bytes, count: int) -> bytes:
    """What ``/gz?text=word&n=count`` encodes: ``word`` in ``count`` numbered lines."""
    return b"".join(b"%s %d\n" % (word, i) for i in range(count))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Recorded:
    """A request the upstream received in full."""

    conn_id: int
    #: Index of this request on its connection (0 = first).
    seq: int
    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]
    body: bytes
    #: How the body was framed on the wire: ``"length"``, ``"chunked"`` or ``"none"``.
    framing: str
    raw_head: bytes = b""

    def header(self, name: str) -> str | None:
        values = self.header_all(name)
        return values[0] if values else None

    def header_all(self, name: str) -> list[str]:
        lower = name.lower()
        return [v for k, v in self.headers if k.lower() == lower]

    @property
    def path(self) -> str:
        return self.target.partition("?")[0]


class _Closed(Exception):
    """The peer closed the connection."""


@dataclass
class _Conn:
    sock: socket.socket
    conn_id: int
    raw: bytearray = field(default_factory=bytearray)
    buf: bytes = b""

    def recv(self, size: int = 65536) -> bytes:
        data = self.sock.recv(size)
        if not data:
            raise _Closed()
        self.raw += data
        return data

    def fill(self, needed: int) -> None:
        parts, size = [self.buf], len(self.buf)
        while size < needed:
            data = self.recv(min(1 << 20, max(65536, needed - size)))
            parts.append(data)
            size += len(data)
        self.buf = b"".join(parts)

    def read_line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self.buf += self.recv()
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def read_exact(self, n: int, *, slow: bool = False) -> bytes:
        if not slow:
            self.fill(n)
            data, self.buf = self.buf[:n], self.buf[n:]
            return data
        out = bytearray()
        while len(out) < n:
            if not self.buf:
                time.sleep(0.01)
                self.buf = self.recv(65536)
            take = min(n - len(out), len(self.buf))
            out += self.buf[:take]
            self.buf = self.buf[take:]
        return bytes(out)


class ScriptedUpstream:
    """The scripted server. Use :meth:`start`/:meth:`stop` (or ``with``)."""

    def __init__(self) -> None:
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(128)
        self.port: int = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.healthy = True
        self._lock = threading.Lock()
        self._records: list[Recorded] = []
        self._sent: dict[str, int] = {}
        self._conns: dict[int, _Conn] = {}
        self._threads: list[threading.Thread] = []
        self._stopping = False
        self._accept_thread = threading.Thread(target=self._accept_loop, daemon=True)

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> ScriptedUpstream:
        self._accept_thread.start()
        return self

    def stop(self) -> None:
        self._stopping = True
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._accept_thread.join(5)
        with self._lock:
            conns = list(self._conns.values())
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(5)

    def __enter__(self) -> ScriptedUpstream:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what tests look at ------------------------------------------------------------------
    @property
    def connection_count(self) -> int:
        """Connections accepted so far."""
        with self._lock:
            return len(self._conns)

    def records(self, token: str | None = None) -> list[Recorded]:
        """Requests received in full, optionally only those whose target contains ``token``."""
        with self._lock:
            records = list(self._records)
        if token is None:
            return records
        return [r for r in records if token in r.target]

    def bytes_sent(self, token: str) -> int:
        """Body bytes ``/big`` has written so far for requests whose target has ``token``."""
        with self._lock:
            return sum(n for target, n in self._sent.items() if token in target)

    def saw(self, token: str) -> bool:
        """Whether ``token`` appears anywhere in the bytes any connection received."""
        needle = token.encode("latin-1")
        with self._lock:
            return any(needle in c.raw for c in self._conns.values())

    # -- serving -----------------------------------------------------------------------------
    def _accept_loop(self) -> None:
        while not self._stopping:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                conn = _Conn(sock, len(self._conns) + 1)
                self._conns[conn.conn_id] = conn
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: _Conn) -> None:
        try:
            seq = 0
            while not self._stopping:
                request = self._read_request(conn, seq)
                if request is None:
                    return
                with self._lock:
                    self._records.append(request)
                if not self._answer(conn, request):
                    return
                seq += 1
        except (_Closed, OSError):
            return
        finally:
            conn.sock.close()

    def _read_request(self, conn: _Conn, seq: int) -> Recorded | None:
        try:
            while b"\r\n\r\n" not in conn.buf:
                conn.buf += conn.recv()
        except _Closed:
            return None
        head, _, conn.buf = conn.buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, target, version = lines[0].split(" ", 2)
        headers = []
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers.append((name, value.strip()))
        rec = Recorded(conn.conn_id, seq, method, target, version, headers, b"", "none", head)
        if rec.path == "/drop-early":
            with self._lock:
                self._records.append(rec)
            raise _Closed()  # before reading the body
        slow = rec.path == "/slowread"
        te = rec.header("transfer-encoding")
        cl = rec.header("content-length")
        if te is not None:
            rec.framing = "chunked"
            body = bytearray()
            while True:
                size = int(conn.read_line().split(b";")[0], 16)
                if size == 0:
                    while conn.read_line():
                        pass  # trailer fields
                    break
                body += conn.read_exact(size, slow=slow)
                conn.read_exact(2)
            rec.body = bytes(body)
        elif cl is not None:
            rec.framing = "length"
            rec.body = conn.read_exact(int(cl), slow=slow)
        return rec

    def _answer(self, conn: _Conn, req: Recorded) -> bool:
        """Write the response; return whether the connection stays open."""
        path = req.path
        query = parse_qs(urlsplit(req.target).query)
        keep = (req.header("connection") or "").lower() != "close"
        sock = conn.sock
        if path == "/drop" or (path == "/flaky" and req.seq > 0):
            return False
        if path == "/slow":
            time.sleep(int(query.get("ms", ["100"])[0]) / 1000)
        if path == "/chunked":
            sock.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n"
                         b"transfer-encoding: chunked\r\n\r\n")
            for part in (b"hello ", b"chunked ", b"world"):
                sock.sendall(b"%x\r\n%b\r\n" % (len(part), part))
                time.sleep(0.005)
            sock.sendall(b"0\r\n\r\n")
            return keep
        if path == "/close":
            sock.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\n"
                         b"a body delimited by the close")
            time.sleep(0.01)
            sock.sendall(b" of the connection")
            return False
        if path == "/big":
            n = int(query.get("n", ["1048576"])[0])
            sock.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\n"
                         b"content-length: %d\r\n\r\n" % n)
            data = pattern(n)
            for i in range(0, n, 65536):
                sock.sendall(data[i : i + 65536])
                with self._lock:
                    self._sent[req.target] = i + len(data[i : i + 65536])
            return keep
        if path == "/gz":
            word, count = query.get("text", ["hello"])[0].encode(), int(query.get("n", ["1"])[0])
            # Numbered lines compress like real text; same=1 repeats T alone (a bomb).
            text = word * count if query.get("same") == ["1"] else gz_text(word, count)
            data = gzip.compress(text, compresslevel=6)
            if query.get("cut") == ["1"]:
                data = data[:-8]
            enc = query.get("enc", ["gzip"])[0].encode()
            if query.get("chunked") == ["1"]:
                sock.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-encoding: %b\r\n"
                             b"transfer-encoding: chunked\r\n\r\n" % enc)
                for i in range(0, len(data), 16384):
                    piece = data[i : i + 16384]
                    sock.sendall(b"%x\r\n%b\r\n" % (len(piece), piece))
                    time.sleep(int(query.get("gap", ["0"])[0]) / 1000)
                sock.sendall(b"0\r\n\r\n")
            else:
                sock.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-encoding: %b\r\n"
                             b"content-length: %d\r\n\r\n%b" % (enc, len(data), data))
            return keep
        if path == "/parts":
            sock.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n")
            for text in query.get("p", []):
                part = text.encode()
                sock.sendall(b"%x\r\n%b\r\n" % (len(part), part))
                time.sleep(0.005)
            sock.sendall(b"0\r\n\r\n")
            return keep
        if path == "/bigchunked":
            n = int(query.get("n", ["1048576"])[0])
            sock.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\n"
                         b"transfer-encoding: chunked\r\n\r\n")
            for i in range(0, n, 65536):
                piece = _PATTERN[: min(65536, n - i)]  # pattern(n) sliced at 64 KiB is the ramp again
                sock.sendall(b"%x\r\n%b\r\n" % (len(piece), piece))
            sock.sendall(b"0\r\n\r\n")
            return keep
        if path.startswith("/status/"):
            status = int(path.rsplit("/", 1)[1])
            self._send(sock, status, {"status": status}, keep)
            return keep
        if path == "/head-test":
            head = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 11\r\n\r\n"
            sock.sendall(head if req.method == "HEAD" else head + b"hello world")
            return keep
        if path == "/hop":
            body = b"hop"
            sock.sendall(b"HTTP/1.1 200 OK\r\nconnection: keep-alive, X-Hop-Secret\r\n"
                         b"keep-alive: timeout=5\r\nx-hop-secret: s3cret\r\n"
                         b"proxy-authenticate: Basic realm=x\r\nx-end-to-end: kept\r\n"
                         b"content-length: %d\r\n\r\n%b" % (len(body), body))
            return keep
        if path == "/garbage":
            sock.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: abc\r\n\r\nhello")
            return False
        if path == "/bad-framing":
            sock.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n"
                         b"transfer-encoding: chunked\r\n\r\n0\r\n\r\n")
            return False
        if path == "/health":
            self._send(sock, 200 if self.healthy else 503, {"healthy": self.healthy}, keep)
            return keep
        self._send(sock, 200, self._echo(req, conn), keep)
        return keep

    def _echo(self, req: Recorded, conn: _Conn) -> dict[str, Any]:
        return {
            "method": req.method,
            "target": req.target,
            "version": req.version,
            "headers": [[k, v] for k, v in req.headers],
            "framing": req.framing,
            "body_len": len(req.body),
            "body_sha256": sha256(req.body),
            "body": req.body.decode("latin-1") if len(req.body) <= 4096 else None,
            "conn": conn.conn_id,
            "seq": req.seq,
            "connections": self.connection_count,
        }

    @staticmethod
    def _send(sock: socket.socket, status: int, doc: dict[str, Any], keep: bool) -> None:
        body = json.dumps(doc).encode()
        head = (f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n"
                f"content-length: {len(body)}\r\n")
        if not keep:
            head += "connection: close\r\n"
        sock.sendall(head.encode() + b"\r\n" + body)
