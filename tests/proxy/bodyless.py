"""A backend that ignores request bodies, as many real ones do: the CL.0 desync target.

A threaded HTTP/1.1 server on loopback that keeps connections alive and parses request
heads only. It never reads the body of GET, HEAD, OPTIONS, DELETE or TRACE (nor of
anything under ``/early``), so whatever such a body holds is parsed as the next request on
the connection, exactly like the backends of the CL.0 reports. It records every request
line it parsed, with the connection it came on, so a test can prove what reached it.

==================  ==========================================================================
``/upload...``      any method: the body *is* read (a backend known to take GET bodies)
``/early...``       answers as soon as the head is parsed and never reads the body
``/extra...``       a complete response, then a second one in the same write (bytes
                    outside any exchange)
``/late...``        a complete response; once :meth:`BodylessBackend.release_stray` is
                    called, a stray response on the now idle connection
anything else       200 with ``{"conn", "seq", "line", "body"}`` (the line it parsed)
a line whose method is not HTTP's, or no line at all
                    ``501`` (as the backends of the report did for ``helloGET /...``)
==================  ==========================================================================
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from dataclasses import dataclass

#: Methods whose bodies the backend reads (outside ``/upload`` and ``/early``).
READS_BODY = frozenset({"POST", "PUT", "PATCH"})
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"})
STRAY = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 5\r\n\r\nevil!"


@dataclass(frozen=True)
class Seen:
    """A request head the backend parsed."""

    conn: int
    #: Index of the head on its connection (0 = first).
    seq: int
    line: str
    #: The body it read (``b""`` when it did not read one).
    body: bytes

    @property
    def path(self) -> str:
        parts = self.line.split(" ")
        return parts[1].partition("?")[0] if len(parts) == 3 else ""


class _Closed(Exception):
    """The peer closed the connection."""


class BodylessBackend:
    """The server. Use it as a context manager."""

    def __init__(self) -> None:
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._lock = threading.Lock()
        self._seen: list[Seen] = []
        self._answered: set[int] = set()
        self._closed_by_peer: set[int] = set()
        self._socks: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._stray = threading.Event()
        self._stopping = False

    def __enter__(self) -> BodylessBackend:
        thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._threads.append(thread)
        thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping = True
        self._stray.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self._lock:
            socks = list(self._socks)
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(5)

    # -- what tests look at ------------------------------------------------------------------
    def seen(self, token: str | None = None) -> list[Seen]:
        """Every head parsed so far (only those whose line contains ``token``, if given)."""
        with self._lock:
            seen = list(self._seen)
        return seen if token is None else [s for s in seen if token in s.line]

    @property
    def connection_count(self) -> int:
        with self._lock:
            return len(self._socks)

    def answered(self, conn: int) -> bool:
        """Whether an ``/early`` answer has been written on connection ``conn``."""
        with self._lock:
            return conn in self._answered

    def closed_by_peer(self, conn: int) -> bool:
        """Whether the gateway closed connection ``conn``."""
        with self._lock:
            return conn in self._closed_by_peer

    def release_stray(self) -> None:
        """Let ``/late`` write its stray response."""
        self._stray.set()

    # -- serving -----------------------------------------------------------------------------
    def _accept_loop(self) -> None:
        while not self._stopping:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self._socks.append(sock)
                conn_id = len(self._socks)
            thread = threading.Thread(target=self._serve, args=(sock, conn_id), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, sock: socket.socket, conn_id: int) -> None:
        buf = b""
        seq = 0

        def recv() -> bytes:
            data = sock.recv(65536)
            if not data:
                with self._lock:
                    self._closed_by_peer.add(conn_id)
                raise _Closed()
            return data

        try:
            while not self._stopping:
                while b"\r\n\r\n" not in buf:
                    buf += recv()
                head, _, buf = buf.partition(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                line = lines[0]
                headers = {}
                for field in lines[1:]:
                    name, _, value = field.partition(":")
                    headers[name.strip().lower()] = value.strip()
                parts = line.split(" ")
                method = parts[0] if len(parts) == 3 else ""
                path = parts[1].partition("?")[0] if len(parts) == 3 else ""
                body = b""
                if method in KNOWN_METHODS and not path.startswith("/early") and (
                    method in READS_BODY or path.startswith("/upload")
                ):
                    length = int(headers.get("content-length", "0"))
                    while len(buf) < length:
                        buf += recv()
                    body, buf = buf[:length], buf[length:]
                seen = Seen(conn_id, seq, line, body)
                seq += 1
                with self._lock:
                    self._seen.append(seen)
                self._answer(sock, seen, method, path)
                if path.startswith("/early"):
                    with self._lock:
                        self._answered.add(conn_id)
                if path.startswith("/late"):
                    self._stray.wait(10)
                    sock.sendall(STRAY)
        except (_Closed, OSError):
            return
        finally:
            sock.close()

    @staticmethod
    def _answer(sock: socket.socket, seen: Seen, method: str, path: str) -> None:
        status = "200 OK" if method in KNOWN_METHODS else "501 Not Implemented"
        doc = {"conn": seen.conn, "seq": seen.seq, "line": seen.line, "body": seen.body.decode("latin-1")}
        body = json.dumps(doc).encode()
        head = (f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\n"
                f"content-length: {len(body)}\r\n\r\n").encode()
        out = head if method == "HEAD" else head + body
        if path.startswith("/extra"):
            out += STRAY
        sock.sendall(out)
