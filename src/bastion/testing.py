"""Helpers for testing Bastion, and services behind it, over real sockets.

Shipped with the package so users' test suites can do what ours do:

- :class:`GatewayProcess` runs ``bastion serve`` on a config you give it (a dict or YAML
  text), waits until it is ready, and stops it (SIGTERM, then SIGKILL) when you are done::

      with GatewayProcess({"services": [...]}) as gw:
          reply = raw_request("127.0.0.1", gw.port, b"GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")

- :func:`raw_request` and :class:`RawConnection` send exact bytes, so malformed and
  pipelined requests reach the gateway as written, and :func:`parse_responses` splits what
  comes back into :class:`RawResponse` objects (Content-Length, chunked and
  close-delimited bodies, informational responses, HEAD).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

__all__ = [
    "GatewayError",
    "GatewayProcess",
    "IncompleteResponse",
    "RawConnection",
    "RawResponse",
    "free_port",
    "parse_one_response",
    "parse_responses",
    "raw_request",
]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that nothing listens on right now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


# -- parsing responses ---------------------------------------------------------------------


class IncompleteResponse(ValueError):
    """The bytes end before the response they start does.

    ``needed`` is the total length the response will have, when the head already tells.
    """

    def __init__(self, message: str, needed: int | None = None) -> None:
        super().__init__(message)
        self.needed = needed


@dataclass
class RawResponse:
    """One HTTP/1.x response as it came off the wire."""

    version: str
    status: int
    reason: str
    #: Header fields in order, names as sent (use :meth:`header` for look-ups).
    headers: list[tuple[str, str]]
    body: bytes
    #: How the body was delimited: ``"length"``, ``"chunked"``, ``"close"`` or ``"none"``.
    framing: str = "none"
    #: Trailer fields of a chunked body.
    trailers: list[tuple[str, str]] = field(default_factory=list)

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or ``None``."""
        values = self.header_all(name)
        return values[0] if values else None

    def header_all(self, name: str) -> list[str]:
        """Every value of header ``name`` (case-insensitive), in order."""
        lower = name.lower()
        return [v for k, v in self.headers if k.lower() == lower]

    def header_names(self) -> set[str]:
        """The lower-cased names of all header fields."""
        return {k.lower() for k, _ in self.headers}

    def json(self) -> Any:
        """The body decoded as JSON."""
        return json.loads(self.body)


def _parse_head(block: bytes) -> tuple[str, int, str, list[tuple[str, str]]]:
    lines = block.decode("latin-1").split("\r\n")
    status_line = lines[0]
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise ValueError(f"not an HTTP status line: {status_line!r}")
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            raise ValueError(f"not a header line: {line!r}")
        headers.append((name, value.strip(" \t")))
    return parts[0][5:], int(parts[1]), parts[2] if len(parts) > 2 else "", headers


def _parse_chunked(data: bytes, pos: int) -> tuple[bytes, list[tuple[str, str]], int]:
    body = bytearray()
    while True:
        eol = data.find(b"\r\n", pos)
        if eol < 0:
            raise IncompleteResponse("the chunked body ends inside a chunk-size line")
        size_text = data[pos:eol].split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise ValueError(f"invalid chunk size {size_text!r}") from None
        pos = eol + 2
        if size == 0:
            break
        if len(data) < pos + size + 2:
            raise IncompleteResponse("the chunked body ends inside a chunk")
        body += data[pos : pos + size]
        if data[pos + size : pos + size + 2] != b"\r\n":
            raise ValueError("a chunk is not followed by CRLF")
        pos += size + 2
    trailers: list[tuple[str, str]] = []
    while True:
        eol = data.find(b"\r\n", pos)
        if eol < 0:
            raise IncompleteResponse("the chunked body ends inside its trailer")
        line = data[pos:eol].decode("latin-1")
        pos = eol + 2
        if not line:
            return bytes(body), trailers, pos
        name, _, value = line.partition(":")
        trailers.append((name, value.strip(" \t")))


def parse_one_response(data: bytes, *, method: str = "GET",
                       eof: bool = True) -> tuple[RawResponse, int]:
    """Parse the response at the start of ``data``; return it and the bytes it used.

    ``method`` is the request's method (a HEAD response has no body whatever its headers
    say). ``eof`` tells whether ``data`` is all the connection will ever carry: only then
    can a body without Content-Length or chunked framing end. Raises
    :class:`IncompleteResponse` when more bytes are needed, ``ValueError`` when the bytes
    are not a valid response.
    """
    end = data.find(b"\r\n\r\n")
    if end < 0:
        raise IncompleteResponse("the response head is not complete")
    version, status, reason, headers = _parse_head(data[:end])
    pos = end + 4
    resp = RawResponse(version, status, reason, headers, b"")
    if method.upper() == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return resp, pos
    te = resp.header("transfer-encoding")
    cl = resp.header_all("content-length")
    if te is not None and te.strip().lower() == "chunked":
        resp.body, resp.trailers, pos = _parse_chunked(data, pos)
        resp.framing = "chunked"
        return resp, pos
    if cl:
        if len(set(cl)) != 1 or not cl[0].isdigit():
            raise ValueError(f"invalid Content-Length {cl!r}")
        size = int(cl[0])
        if len(data) < pos + size:
            raise IncompleteResponse(f"the body has {len(data) - pos} of {size} bytes",
                                     needed=pos + size)
        resp.body = data[pos : pos + size]
        resp.framing = "length"
        return resp, pos + size
    if not eof:
        raise IncompleteResponse("the body ends when the connection closes")
    resp.body = data[pos:]
    resp.framing = "close"
    return resp, len(data)


def parse_responses(data: bytes, methods: Sequence[str] | None = None, *,
                    eof: bool = True) -> list[RawResponse]:
    """Split ``data`` (everything read from a connection) into its responses, in order.

    ``methods`` gives the method of each request in order (default all GET), so HEAD
    responses are parsed right; informational (1xx) responses are returned as their own
    entries and do not use up a method. Trailing bytes that do not form a whole response
    raise :class:`IncompleteResponse`.
    """
    out: list[RawResponse] = []
    pos = 0
    index = 0
    while pos < len(data):
        method = methods[index] if methods is not None and index < len(methods) else "GET"
        resp, used = parse_one_response(data[pos:], method=method, eof=eof)
        out.append(resp)
        pos += used
        if not 100 <= resp.status < 200:
            index += 1
    return out


# -- raw client ----------------------------------------------------------------------------


def raw_request(host: str, port: int, data: bytes, *, timeout: float = 5.0,
                read_until_close: bool = True) -> bytes:
    """Send ``data`` as written and return the bytes that come back.

    With ``read_until_close`` this reads until the server closes the connection (and
    raises ``TimeoutError`` if it does not within ``timeout``); otherwise it returns as
    soon as one whole final response has arrived.
    """
    with RawConnection(host, port, timeout=timeout) as conn:
        conn.send(data)
        if read_until_close:
            return conn.read_until_close()
        conn.read_response()
        return conn.received


class RawConnection:
    """A client socket that sends exact bytes and reads responses one at a time."""

    def __init__(self, host: str, port: int, *, timeout: float = 5.0) -> None:
        self.timeout = timeout
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._received = bytearray()
        self._buffer = bytearray()
        self._needed = 0
        self.eof = False

    def __enter__(self) -> RawConnection:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    @property
    def received(self) -> bytes:
        """Every byte received so far."""
        return bytes(self._received)

    def close(self) -> None:
        """Close the socket."""
        self.sock.close()

    def send(self, data: bytes) -> None:
        """Send ``data`` in one ``sendall``."""
        self.sock.sendall(data)

    def shutdown_write(self) -> None:
        """Half-close: tell the server nothing more will be sent."""
        self.sock.shutdown(socket.SHUT_WR)

    def _recv(self, deadline: float) -> bool:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"no complete answer in {self.timeout}s; "
                               f"got {bytes(self._buffer[:300])!r}")
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(256 * 1024)
        except TimeoutError:
            raise TimeoutError(f"no complete answer in {self.timeout}s; "
                               f"got {bytes(self._buffer[:300])!r}") from None
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.eof = True
            return False
        self._received += chunk
        self._buffer += chunk
        return True

    def read_response(self, method: str = "GET", *, skip_informational: bool = True) -> RawResponse:
        """Read the next response (by default skipping 100 Continue and other 1xx)."""
        deadline = time.monotonic() + self.timeout
        while True:
            if len(self._buffer) < self._needed and not self.eof:
                self._recv(deadline)  # a known length is not there yet: no need to parse
                continue
            try:
                resp, used = parse_one_response(bytes(self._buffer), method=method, eof=self.eof)
            except IncompleteResponse as exc:
                if self.eof:
                    raise ConnectionError("the connection closed before a whole response; "
                                          f"got {bytes(self._buffer[:300])!r}") from None
                self._needed = exc.needed or 0
                self._recv(deadline)
                continue
            self._needed = 0
            del self._buffer[:used]
            if skip_informational and 100 <= resp.status < 200:
                continue
            return resp

    def read_until_close(self) -> bytes:
        """Read until the server closes; return the bytes not yet consumed as responses."""
        deadline = time.monotonic() + self.timeout
        while self._recv(deadline):
            pass
        rest = bytes(self._buffer)
        self._buffer.clear()
        return rest

    def read_some(self, size: int, *, timeout: float | None = None) -> bytes:
        """Read up to ``size`` bytes (``b""`` at end of stream), outside the response parser."""
        self.sock.settimeout(self.timeout if timeout is None else timeout)
        try:
            data = self.sock.recv(size)
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
        self._received += data
        return data

    def is_closed_by_peer(self, wait: float = 1.0) -> bool:
        """Whether the server closes the connection within ``wait`` seconds (unread bytes fail)."""
        self.sock.settimeout(wait)
        try:
            data = self.sock.recv(1)
        except TimeoutError:
            return False
        except ConnectionResetError:
            return True
        if data:
            raise AssertionError(f"unexpected bytes after the last response: {data!r}")
        self.eof = True
        return True


# -- a gateway process ---------------------------------------------------------------------


class GatewayError(RuntimeError):
    """The gateway did not start, or did not answer its admin API as expected."""


def _admin_call(host: str, port: int, method: str, path: str,
                timeout: float = 2.0, headers: Mapping[str, str] | None = None,
                body: bytes | None = None, tls: bool = False) -> tuple[int, bytes]:
    conn: http.client.HTTPConnection
    if tls:
        # A test gateway's own self-signed certificate, on loopback: not verified here
        # (the admin TLS test verifies it).
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=dict(headers or {}))
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


class GatewayProcess:
    """``bastion serve`` in a child process, on a config written to a temporary folder.

    ``config`` is a mapping (the parsed ``bastion.yaml``) or YAML text. Missing
    ``listen.port``/``admin.port`` are filled with free ports, and relative paths in the
    config (access log, OpenAPI documents, certificates) resolve against the folder the
    config is written to (``files`` adds more files there). Use it as a context manager:
    entering waits until the admin ``/ready`` answers 200, leaving stops the gateway.
    """

    def __init__(self, config: Mapping[str, Any] | str, *, workers: int = 1,
                 files: Mapping[str, str | bytes] | None = None, folder: str | Path | None = None,
                 ready_timeout: float = 20.0, stop_timeout: float = 10.0,
                 log_level: str = "info", env: Mapping[str, str] | None = None) -> None:
        if isinstance(config, str):
            text: str | None = config
            parsed = yaml.safe_load(config)
            if not isinstance(parsed, dict):
                raise ValueError("the config text is not a YAML mapping")
            data: dict[str, Any] = parsed
        else:
            text = None
            data = json.loads(json.dumps(config))  # a deep copy we may fill in
        listen = data.setdefault("listen", {})
        admin = data.setdefault("admin", {})
        if "port" not in listen or "port" not in admin:
            text = None  # must be written with the ports filled in
            listen.setdefault("host", "127.0.0.1")
            listen.setdefault("port", free_port())
            admin.setdefault("host", "127.0.0.1")
            admin.setdefault("port", free_port())
        self.config: dict[str, Any] = data
        self.host: str = str(listen.get("host", "127.0.0.1"))
        self.port: int = int(listen["port"])
        self.admin_host: str = str(admin.get("host", "127.0.0.1"))
        self.admin_port: int = int(admin["port"])
        scheme = "https" if listen.get("tls") else "http"
        self.url = f"{scheme}://{self.host}:{self.port}"
        self.admin_tls = bool(admin.get("tls"))
        self.admin_url = f"{'https' if self.admin_tls else 'http'}://{self.admin_host}:{self.admin_port}"
        self.workers = workers
        self.ready_timeout = ready_timeout
        self.stop_timeout = stop_timeout
        self.log_level = log_level
        self._env = dict(env) if env is not None else None
        self._own_folder = folder is None
        if folder is None:
            folder = tempfile.mkdtemp(prefix="bastion-test-")
        self.folder = Path(folder)
        self.config_path = self.folder / "bastion.yaml"
        self._admin_tokens: dict[str, str] = {}
        if text is None:
            text = yaml.safe_dump(data, sort_keys=False)
        self.config_path.write_text(text)
        for name, content in (files or {}).items():
            target = self.folder / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                target.write_bytes(content)
            else:
                target.write_text(content)
        self.proc: subprocess.Popen[bytes] | None = None
        self._stderr_path = self.folder / "gateway.stderr"
        self._stdout_path = self.folder / "gateway.stdout"

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> GatewayProcess:
        """Start the gateway and wait until it is ready; raise :class:`GatewayError` if not."""
        cmd = [sys.executable, "-m", "bastion", "serve", "-c", str(self.config_path),
               "--workers", str(self.workers), "--log-level", self.log_level]
        env = {**os.environ, **(self._env or {})}
        with open(self._stdout_path, "wb") as out, open(self._stderr_path, "wb") as err:
            # Its own session: a SIGKILL after a failed stop reaches its workers too.
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=self.folder,
                                         start_new_session=True)
        deadline = time.monotonic() + self.ready_timeout
        while True:
            code = self.proc.poll()
            if code is not None:
                self.proc.wait()
                raise GatewayError(f"the gateway exited with {code} before it was ready; stderr:\n"
                                   f"{self.stderr_text()}")
            with contextlib.suppress(OSError, http.client.HTTPException):
                status, _ = _admin_call(self.admin_host, self.admin_port, "GET", "/ready", 1.0,
                                           tls=self.admin_tls)
                if status == 200:
                    return self
            if time.monotonic() > deadline:
                self.stop()
                raise GatewayError(f"the gateway was not ready after {self.ready_timeout}s; "
                                   f"stderr:\n{self.stderr_text()}")
            time.sleep(0.05)

    def stop(self) -> int | None:
        """SIGTERM, wait up to ``stop_timeout``, then SIGKILL. Returns the exit code."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        return proc.returncode

    def __enter__(self) -> GatewayProcess:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
        if self._own_folder:
            shutil.rmtree(self.folder, ignore_errors=True)

    # -- inspection --------------------------------------------------------------------------
    def stderr_text(self) -> str:
        """Everything the gateway wrote to standard error so far."""
        try:
            return self._stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stdout_text(self) -> str:
        """Everything the gateway wrote to standard output so far."""
        try:
            return self._stdout_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    @property
    def access_log_path(self) -> Path | None:
        """The access log file the config names (``None`` for stdout or no log)."""
        section = self.config.get("access_log") or {}
        if not section.get("enabled", True):
            return None
        path = str(section.get("path", "-"))
        if path == "-":
            return None
        return self.folder / path

    def access_log_records(self) -> list[dict[str, Any]]:
        """The access log's records so far (JSON lines; a partly written last line is skipped)."""
        path = self.access_log_path
        if path is None:
            raise GatewayError("the config names no access log file")
        try:
            text = path.read_text()
        except FileNotFoundError:
            return []
        records: list[dict[str, Any]] = []
        for line in text.splitlines():
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # being written
        return records

    def wait_for_access_record(self, predicate: Callable[[dict[str, Any]], bool],
                               timeout: float = 5.0) -> dict[str, Any]:
        """The first access log record ``predicate`` accepts, waiting for the log's flush."""
        deadline = time.monotonic() + timeout
        while True:
            for record in self.access_log_records():
                if predicate(record):
                    return record
            if time.monotonic() > deadline:
                raise GatewayError(f"no matching access log record within {timeout}s")
            time.sleep(0.05)

    def admin(self, method: str, path: str, timeout: float = 5.0, *, token: str | None = None,
              json_body: Any = None) -> tuple[int, Any]:
        """Call the admin API (with ``Authorization: Bearer token`` when given); return the
        status and the decoded JSON body."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        body = None
        if json_body is not None:
            body = json.dumps(json_body).encode()
            headers["Content-Type"] = "application/json"
        status, raw = _admin_call(self.admin_host, self.admin_port, method, path, timeout, headers, body,
                                  self.admin_tls)
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode("latin-1")

    def admin_token(self, role: str = "admin") -> str:
        """An admin API token of ``role`` (its user made on first use, in the gateway's store)."""
        if role not in self._admin_tokens:
            from bastion.config import load_config
            from bastion.control.accounts.roles import Role
            from bastion.store import admins, open_store

            loaded = load_config(self.config_path)
            store = open_store(loaded.config.store, loaded.config.consumers)
            try:
                with store.write() as session:
                    user = admins.get(session, f"test-{role}") or admins.create(session, f"test-{role}",
                                                                               Role.parse(role))[0]
                    self._admin_tokens[role] = admins.create_token(session, store.pepper, user, "tests")[1]
            finally:
                store.close()
        return self._admin_tokens[role]

    def reload(self) -> tuple[int, Any]:
        """``POST /reload`` on the admin API, with an operator's token."""
        return self.admin("POST", "/reload", token=self.admin_token("operator"))

    def write_config(self, config: Mapping[str, Any] | str) -> None:
        """Replace the config file (call :meth:`reload` afterwards, or let the watcher see it)."""
        text = config if isinstance(config, str) else yaml.safe_dump(dict(config), sort_keys=False)
        if self.proc is not None and self.proc.poll() is None:
            # reload() needs a token from the store the current file names; the new file may
            # be broken on purpose.
            self.admin_token("operator")
        self.config_path.write_text(text)
