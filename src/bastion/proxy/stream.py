"""A response body streaming from the upstream to the client: its head, the sink each
upstream chunk goes through (the body hooks, gzip decoding, chunked framing, back-pressure
on the upstream when the client reads slowly), and its end.

Functions over the client's connection (``server.py``), which owns the socket; the
exchange's response steps (``respond.py``) call them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from bastion.pipeline.chain import BodyFilter
from bastion.proxy.coding import DecodeError, Gunzip
from bastion.proxy.http import serialize_headers, status_line
from bastion.proxy.http1 import Incoming, streamed_framing
from bastion.proxy.record import RecordDraft
from bastion.proxy.upstream import UpstreamPool
from bastion.proxy.upstream_connection import UpstreamConnection
from bastion.types import HeaderList, Response, header_get

if TYPE_CHECKING:
    from bastion.proxy.server import ClientConnection

log = logging.getLogger("bastion.proxy")


class Stream:
    """A response body streaming from the upstream to the client."""

    __slots__ = ("body_filter", "chunked", "cut", "decoder", "sent")

    def __init__(self, chunked: bool) -> None:
        self.chunked = chunked
        self.sent = 0
        #: The route's body hooks, when it has any.
        self.body_filter: BodyFilter | None = None
        #: Decodes a gzip body for the body hooks.
        self.decoder: Gunzip | None = None
        #: A body hook failed closed: nothing more of the body is sent.
        self.cut = False


def stream_head(
    client: ClientConnection,
    req: Incoming,
    resp: Response,
    record: RecordDraft,
    request_id: str,
    keep: bool,
    conn: UpstreamConnection,
    body_filter: BodyFilter | None = None,
    decoder: Gunzip | None = None,
) -> tuple[bool, Stream | None]:
    """Send the head of a response whose body streams from ``conn``, and route the body
    chunks to the client (through ``body_filter``, the route's body hooks, if any, and
    decoded by ``decoder`` for them first when the upstream sent it gzip).
    Returns whether the connection stays open, and the stream (``None`` when the client
    is already gone)."""
    has_length = header_get(resp.headers, "content-length") is not None
    forbidden, chunked, keep = streamed_framing(resp.status, req, has_length, keep)
    if client.server.draining:
        keep = False  # shutting down: every answer ends its connection, and says so
    headers = resp.headers
    if chunked:
        headers.append(("transfer-encoding", "chunked"))
    finish_headers(client, headers, keep, request_id)
    transport = client.transport
    record.status = resp.status
    if transport is None or client.closed:
        return False, None
    transport.write(status_line(resp.status) + serialize_headers(headers))
    stream = Stream(chunked)
    if not forbidden:
        if body_filter is None:
            conn.set_sink(make_sink(client, conn, stream))
        else:
            stream.body_filter = body_filter
            stream.decoder = decoder
            conn.set_sink(make_filtered_sink(client, conn, stream, body_filter, decoder))
    return keep, stream


def make_sink(client: ClientConnection, conn: UpstreamConnection, stream: Stream) -> Callable[[bytes], None]:
    transport = client.transport
    assert transport is not None
    chunked = stream.chunked

    def sink(chunk: bytes) -> None:
        stream.sent += len(chunk)
        if client.closed:
            return
        if chunked:
            transport.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
        else:
            transport.write(chunk)
        if client.write_paused and client.paused_upstream is None:
            # Back-pressure: stop reading the upstream until the client catches up.
            conn.pause_reading()
            client.paused_upstream = conn

    return sink


def make_filtered_sink(
    client: ClientConnection, conn: UpstreamConnection, stream: Stream, body_filter: BodyFilter, decoder: Gunzip | None
) -> Callable[[bytes], None]:
    """Like ``make_sink``, each piece (decoded first, if gzip) going through the body
    hooks; a hook failing closed, or a gzip body that cannot be decoded, cuts the
    connection (the head is out: the only honest signal left)."""
    write = make_sink(client, conn, stream)

    def through(piece: bytes) -> bool:
        out = body_filter.feed(piece, False)
        if out is None:
            return False
        if out:  # an empty piece would end a chunked body
            write(out)
        return True

    def sink(chunk: bytes) -> None:
        if client.closed or stream.cut:
            return
        if decoder is None:
            ok = through(chunk)
        else:
            ok = True
            try:
                for piece in decoder.pieces(chunk):
                    if not through(piece):
                        ok = False
                        break
            except DecodeError as exc:
                log.warning("upstream gzip body cut: %s", exc)
                ok = False
        if not ok:
            stream.cut = True
            client.abort()

    return sink


def end_stream(
    client: ClientConnection, stream: Stream, conn: UpstreamConnection, pool: UpstreamPool, record: RecordDraft
) -> bool:
    """The upstream body ended: send what the body hooks held back, close the chunked
    body and give the connection back. Returns whether the body went out whole."""
    body_filter = stream.body_filter
    if body_filter is not None and not stream.cut and not client.closed and client.transport is not None:
        tail = body_filter.feed(b"", True)
        decoder = stream.decoder
        if decoder is not None:
            try:
                decoder.end()
            except DecodeError as exc:
                log.warning("upstream gzip body cut: %s", exc)
                tail = None
        if tail is None:
            stream.cut = True
            client.abort()
        elif tail:
            make_sink(client, conn, stream)(tail)
    if stream.cut:
        record.bytes_out = stream.sent
        conn.close()  # the exchange was broken off: never pooled
        return False
    if stream.chunked and not client.closed and client.transport is not None:
        client.transport.write(b"0\r\n\r\n")
    record.bytes_out = stream.sent
    if client.paused_upstream is conn:
        # The last piece arrived just as this client stopped reading: the connection
        # goes back to the pool, reading again (its next exchange must be read).
        client.paused_upstream = None
        conn.resume_reading()
    pool.release(conn)
    return True


def finish_headers(client: ClientConnection, headers: HeaderList, keep: bool, request_id: str) -> None:
    headers.append(("x-request-id", request_id))
    hsts = client.server.runtime.hsts
    if hsts is not None and client.scheme == "https":
        headers.append(("strict-transport-security", hsts))
    if not keep:
        headers.append(("connection", "close"))
        client.close_sent = True


__all__ = ["Stream", "end_stream", "finish_headers", "stream_head"]
