"""Content codings of upstream response bodies, for the stages that must see the body.

Only gzip is decoded (it is what upstreams send; ``x-gzip`` is its old name). Decoding is
bounded against decompression bombs: a body known in full may not decode to more than the
route's ``max_response_body_bytes``; a streamed one is decoded in pieces of at most
:data:`PIECE` bytes, and may not grow beyond :data:`MAX_RATIO` times what came compressed
(plus :data:`SLACK`), so one read from the upstream never turns into more than a bounded
amount of memory.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator

from bastion.types import HeaderList, header_get

#: Most bytes one step of a streamed decode makes.
PIECE = 64 * 1024
#: A streamed gzip body may decode to at most this many times its compressed size...
MAX_RATIO = 100
#: ...plus this much (a small body of repetitive JSON compresses far better than 100:1).
SLACK = 1024 * 1024
#: gzip framing for zlib (a gzip header and trailer around deflate data).
_GZIP_WBITS = 31


class DecodeError(Exception):
    """The body is not valid gzip, ends early, or expands beyond its bound."""


def coding_of(headers: HeaderList) -> str:
    """The response's content coding, lower-cased: ``""`` for none (or ``identity``),
    ``"gzip"`` for gzip or x-gzip, anything else as it was sent (``"br"``, ``"gzip, br"``)."""
    value = header_get(headers, "content-encoding")
    if value is None:
        return ""
    coding = value.strip().lower()
    if coding == "identity":
        return ""
    return "gzip" if coding == "x-gzip" else coding


def without_coding(headers: HeaderList) -> HeaderList:
    """The headers of the decoded body: no Content-Encoding, no Content-Length."""
    return [(k, v) for k, v in headers if k != "content-encoding" and k != "content-length"]


def gunzip_whole(data: bytes, limit: int) -> bytes | None:
    """``data`` decoded, or ``None`` when it decodes to more than ``limit`` bytes (never
    holding more than ``limit`` and one piece)."""
    decoder = Gunzip(bounded=False)
    parts: list[bytes] = []
    size = 0
    for piece in decoder.pieces(data):
        size += len(piece)
        if size > limit:
            return None
        parts.append(piece)
    decoder.end()
    return b"".join(parts)


class Gunzip:
    """A gzip body decoded as it comes, member after member, in pieces of at most
    :data:`PIECE` bytes; ``bounded``: held to :data:`MAX_RATIO` (a streamed body)."""

    __slots__ = ("_bounded", "_in", "_out", "_z")

    def __init__(self, *, bounded: bool) -> None:
        self._z = zlib.decompressobj(_GZIP_WBITS)
        self._bounded = bounded
        self._in = 0
        self._out = 0

    def pieces(self, data: bytes) -> Iterator[bytes]:
        """The decoded pieces ``data`` makes, one at a time (each may be used before the
        next is made)."""
        self._in += len(data)
        z = self._z
        while True:
            try:
                piece = z.decompress(data, PIECE)
            except zlib.error as exc:
                raise DecodeError(f"the gzip body is invalid: {exc}") from None
            if piece:
                self._out += len(piece)
                if self._bounded and self._out > self._in * MAX_RATIO + SLACK:
                    raise DecodeError(f"the gzip body expands more than {MAX_RATIO} times")
                yield piece
            if z.eof:
                data = z.unused_data
                if not data:
                    return
                self._z = z = zlib.decompressobj(_GZIP_WBITS)  # another member follows
                continue
            data = z.unconsumed_tail
            if not data and len(piece) < PIECE:
                return  # all input used, and zlib had no more to give

    def end(self) -> None:
        """The body ended: it must have been complete gzip."""
        if not self._z.eof:
            raise DecodeError("the gzip body ends early")


__all__ = ["DecodeError", "Gunzip", "coding_of", "gunzip_whole", "without_coding"]
