"""Fuzz inputs as structured requests: a reader over atheris' ``FuzzedDataProvider`` and its inverse.

libFuzzer mutates bytes; the harnesses read them with :class:`Reader` as choices (a method, a
header name, a body kind) and length-prefixed strings. :class:`Writer` produces the bytes that
read back as a given request, so the seed corpus can start from real requests (the benign
benchmark corpus, attack payloads) instead of noise.

``FuzzedDataProvider`` takes byte strings from the front of the data and integers from the
back (a 1-byte integer for a range up to 255, 2 bytes big-endian up to 65535), reduced modulo
the range; :class:`Writer` lays the two streams out the same way.
"""

from __future__ import annotations

import gzip
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from bastion.types import Request

T = TypeVar("T")

#: Longest string a single length prefix can announce (a 2-byte integer).
MAX_LEN = 0xFFFF
#: Most bytes a body may reach after amplification (see :func:`read_request`): more than a
#: window (16 KiB), small enough that linear work (up to about 17 µs a byte for the worst
#: bodies found: two extractions and two engines, instrumented) stays under the per-input
#: bound, while superlinear work does not.
MAX_BODY = 20 * 1024

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD")
#: Header names a request may carry; "" means a fuzzed name.
HEADER_NAMES = (
    "",
    "user-agent",
    "cookie",
    "referer",
    "x-forwarded-host",
    "authorization",
    "accept",
    "content-type",
    "content-encoding",
    "x-api-version",
    "x-request-id",
    "origin",
    "host",
    "x-forwarded-for",
)
BODY_KINDS = ("none", "raw", "json", "form", "multipart", "xml")
PART_TYPES = ("", "text/plain", "application/json", "application/octet-stream", "image/png", "text/xml")
#: How a body is sent: as is, gzip-compressed, or labelled gzip without being compressed.
ENCODINGS = ("identity", "gzip", "false-gzip")


class Provider(Protocol):
    """The part of ``atheris.FuzzedDataProvider`` the reader uses."""

    def ConsumeIntInRange(self, low: int, high: int) -> int: ...

    def ConsumeBytes(self, count: int) -> bytes: ...


class Reader:
    """Typed choices and strings from fuzz data."""

    def __init__(self, provider: Provider) -> None:
        self._p = provider

    def choice(self, n: int) -> int:
        """An integer in ``range(n)`` (``n`` at most 256): one byte."""
        return self._p.ConsumeIntInRange(0, n - 1)

    def pick(self, options: Sequence[T]) -> T:
        return options[self.choice(len(options))]

    def blob(self, most: int = MAX_LEN) -> bytes:
        """A length-prefixed byte string of at most ``most`` bytes."""
        return self._p.ConsumeBytes(min(self._p.ConsumeIntInRange(0, MAX_LEN), most))

    def latin1(self, most: int = MAX_LEN) -> str:
        """Text as a header or target arrives from the proxy (one character per byte)."""
        return self.blob(most).decode("latin-1")

    def utf8(self, most: int = MAX_LEN) -> str:
        """Valid Unicode text, as the router's percent-decoding gives (bad UTF-8 is U+FFFD)."""
        return self.blob(most).decode("utf-8", "replace")

    def text(self, most: int = MAX_LEN) -> str:
        """Any ``str``: UTF-8, with invalid bytes kept as lone surrogates (U+DC80..U+DCFF)."""
        return self.blob(most).decode("utf-8", "surrogateescape")


@dataclass
class Writer:
    """Builds the bytes a :class:`Reader` reads back as the given choices and strings."""

    front: bytearray = field(default_factory=bytearray)
    #: Integer bytes in the order the reader consumes them (stored reversed at the end).
    back: bytearray = field(default_factory=bytearray)

    def choice(self, n: int, value: int) -> None:
        if not 0 <= value < n <= 256:
            raise ValueError(f"choice {value} is not in range({n})")
        self.back.append(value)

    def pick(self, options: Sequence[Any], value: Any) -> None:
        self.choice(len(options), options.index(value))

    def blob(self, data: bytes) -> None:
        data = data[:MAX_LEN]
        self.back += len(data).to_bytes(2, "big")
        self.front += data

    def latin1(self, text: str) -> None:
        self.blob(text.encode("latin-1", "replace"))

    def text(self, text: str) -> None:
        self.blob(text.encode("utf-8", "surrogateescape"))

    def data(self) -> bytes:
        return bytes(self.front) + bytes(reversed(self.back))


@dataclass
class Part:
    """One multipart part."""

    name: str
    content: bytes
    filename: str | None = None
    content_type: str = ""


@dataclass
class RequestSpec:
    """A request in the structured form the harnesses read (see :func:`read_request`)."""

    method: str = "GET"
    path: str = "/"
    query: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    body_kind: str = "none"
    body: bytes = b""
    boundary: str = "b0undary"
    parts: list[Part] = field(default_factory=list)
    encoding: str = "identity"
    repeat: int = 0

    def write(self, w: Writer) -> None:
        """The inverse of :func:`read_request`."""
        w.pick(METHODS, self.method if self.method in METHODS else "GET")
        w.latin1(self.path)
        w.latin1(self.query)
        headers = self.headers[:15]
        w.choice(16, len(headers))
        for name, value in headers:
            known = name if name in HEADER_NAMES else ""
            w.pick(HEADER_NAMES, known)
            if not known:
                w.latin1(name)
            w.latin1(value)
        w.pick(BODY_KINDS, self.body_kind)
        if self.body_kind == "multipart":
            w.latin1(self.boundary)
            w.choice(8, len(self.parts[:7]))
            for part in self.parts[:7]:
                w.text(part.name)
                w.choice(2, part.filename is not None)
                if part.filename is not None:
                    w.text(part.filename)
                w.pick(PART_TYPES, part.content_type if part.content_type in PART_TYPES else "")
                w.blob(part.content)
        elif self.body_kind != "none":
            w.blob(self.body)
            w.choice(256, self.repeat)
        w.pick(ENCODINGS, self.encoding)


def read_request(r: Reader) -> RequestSpec:
    """A request's parts from fuzz data (bounded: 15 headers, 7 parts, bodies to 20 KiB)."""
    spec = RequestSpec(method=r.pick(METHODS), path=r.latin1(2048), query=r.latin1(8192))
    for _ in range(r.choice(16)):
        name = r.pick(HEADER_NAMES) or r.latin1(64).lower()
        spec.headers.append((name, r.latin1(8192)))
    spec.body_kind = r.pick(BODY_KINDS)
    if spec.body_kind == "multipart":
        spec.boundary = r.latin1(100)
        for _ in range(r.choice(8)):
            name = r.text(200)
            filename = r.text(200) if r.choice(2) else None
            spec.parts.append(Part(name, r.blob(), filename, r.pick(PART_TYPES)))
    elif spec.body_kind != "none":
        spec.body = r.blob()
        # Amplification: a short input can stand for a long body (windows, bounds, time).
        spec.repeat = r.choice(256)
        if spec.repeat > 200 and spec.body:
            spec.body = (spec.body * (MAX_BODY // len(spec.body) + 1))[: (spec.repeat - 200) * MAX_BODY // 55]
    spec.encoding = r.pick(ENCODINGS)
    return spec


def _multipart_body(spec: RequestSpec) -> bytes:
    out = bytearray()
    delim = b"--" + spec.boundary.encode("latin-1")
    for part in spec.parts:
        out += delim + b'\r\nContent-Disposition: form-data; name="' + part.name.encode("utf-8", "surrogateescape")
        if part.filename is not None:
            out += b'"; filename="' + part.filename.encode("utf-8", "surrogateescape")
        out += b'"\r\n'
        if part.content_type:
            out += b"Content-Type: " + part.content_type.encode() + b"\r\n"
        out += b"\r\n" + part.content + b"\r\n"
    out += delim + b"--\r\n"
    return bytes(out)


_CONTENT_TYPES = {
    "json": "application/json",
    "form": "application/x-www-form-urlencoded",
    "xml": "application/xml",
}


def to_request(spec: RequestSpec) -> Request:
    """The :class:`Request` the proxy would hand to the stages for ``spec``."""
    headers = [(name.lower(), value) for name, value in spec.headers]
    body: bytes | None = None
    if spec.body_kind == "multipart":
        body = _multipart_body(spec)
        headers.append(("content-type", f"multipart/form-data; boundary={spec.boundary}"))
    elif spec.body_kind != "none":
        body = spec.body
        if spec.body_kind in _CONTENT_TYPES:
            headers.append(("content-type", _CONTENT_TYPES[spec.body_kind]))
    if body is not None and spec.encoding != "identity":
        if spec.encoding == "gzip":
            body = gzip.compress(body, compresslevel=1, mtime=0)
        headers.append(("content-encoding", "gzip"))
    path = spec.path if spec.path.startswith("/") else "/" + spec.path
    target = path + ("?" + spec.query if spec.query else "")
    request = Request(spec.method, target, path, spec.query, headers)
    request.body = body
    return request
