"""The sans-IO HTTP/1.1 core (``proxy/http1.py``), driven by byte transcripts: no socket.

Each test feeds what a client would send and compares what the reader reports to its owner
(the events of each call) and what it queued (the parsed requests, or the refusal a request
carries). The same rules run behind every socket test of ``test_smuggling.py``; here each
one is pinned down exactly, in microseconds.
"""

from __future__ import annotations

import pytest

from bastion.config.model import Limits
from bastion.proxy.http1 import (
    BODY_BUFFER_HIGH,
    DATA,
    FAILED,
    HEAD,
    MAX_QUEUED,
    PAUSE,
    STARTED,
    Incoming,
    RequestReader,
    body_discardable,
    keeps_alive_after_refusal,
    streamed_framing,
)

_NAMES = ((STARTED, "started"), (HEAD, "head"), (DATA, "data"), (FAILED, "failed"), (PAUSE, "pause"))


def named(events: int) -> str:
    """``started head data``: the events of one call, in a fixed order."""
    return " ".join(name for flag, name in _NAMES if events & flag)


class Transcript:
    """A reader and the lines of its transcript: one per call, like mitmproxy's
    ``>> DataReceived(...)`` / ``<< Hook(...)``."""

    def __init__(self, limits: Limits | None = None) -> None:
        self.reader = RequestReader(limits or Limits())
        self.lines: list[str] = []

    def feed(self, data: bytes) -> str:
        line = named(self.reader.feed(data))
        self.lines.append(line)
        return line

    @property
    def queue(self) -> list[Incoming]:
        return list(self.reader.queue)


def refusal(data: bytes, limits: Limits | None = None) -> tuple[int, str]:
    """Feed ``data``; return the refusal queued for it (and check parsing stopped)."""
    t = Transcript(limits)
    assert t.feed(data).endswith("failed pause"), t.lines
    assert t.reader.dead
    last = t.queue[-1]
    assert last.parse_error and not last.keep_alive and last.error is not None
    return last.error


def test_get_is_one_head_and_its_end() -> None:
    """A GET without a body: one read starts, queues and completes it, with its fields."""
    t = Transcript()
    assert t.feed(b"GET /a?b=1 HTTP/1.1\r\nHost: example.com\r\nX-One: 1\r\n\r\n") == "started head data"
    (req,) = t.queue
    assert (req.method, req.url, req.version, req.complete) == ("GET", b"/a?b=1", "1.1", True)
    assert req.headers == [("host", "example.com"), ("x-one", "1")]
    assert req.host == "example.com" and req.keep_alive and req.error is None
    assert not t.reader.receiving and not t.reader.dead


def test_head_split_across_reads_starts_once() -> None:
    """A head arriving byte by byte starts once (one header timeout) and is queued once;
    the reads in between report nothing."""
    t = Transcript()
    data = b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"
    for i in range(len(data)):
        t.feed(data[i : i + 1])
        if i == 0:
            assert t.reader.receiving
    assert t.lines[0] == "started" and t.lines[-1] == "head data"
    assert set(t.lines[1:-1]) == {""} and len(t.queue) == 1


def test_pipelined_requests_queue_in_order() -> None:
    """Three pipelined requests in one read are queued in order, bodies with their heads."""
    t = Transcript()
    line = t.feed(
        b"GET /1 HTTP/1.1\r\nHost: h\r\n\r\n"
        b"POST /2 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc"
        b"DELETE /3 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
    )
    assert line == "started head data"
    assert [q.url for q in t.queue] == [b"/1", b"/2", b"/3"]
    assert t.queue[1].take_buffered() == b"abc" and t.queue[1].consumed == 3
    assert [q.keep_alive for q in t.queue] == [True, True, False]


def test_chunked_body_arrives_in_pieces() -> None:
    """A chunked body is collected piece by piece, each read waking a body reader."""
    t = Transcript()
    assert t.feed(b"POST /u HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n") == "started head"
    assert t.feed(b"3\r\nabc\r\n") == "data"
    (req,) = t.queue
    assert req.buffered == 3 and not req.complete
    assert t.feed(b"2\r\nde\r\n0\r\n\r\n") == "data"
    assert req.chunked and req.content_length is None and req.complete
    assert req.pop_chunk() == b"abc" and req.pop_chunk() == b"de" and req.pop_chunk() is None
    assert req.buffered == 0 and req.consumed == 5


# -- refusals (the smuggling vectors among them) -------------------------------------------
POST = b"POST / HTTP/1.1\r\nHost: h\r\n"


@pytest.mark.parametrize(
    ("data", "status", "detail"),
    [
        (POST + b"Transfer-Encoding: gzip, chunked\r\n\r\n", 400, "Transfer-Encoding must be exactly 'chunked'."),
        (
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            400,
            "HTTP/1.0 requests cannot use Transfer-Encoding.",
        ),
        (b"GET / HTTP/1.1\r\n\r\n", 400, "HTTP/1.1 requests need exactly one Host header."),
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, "HTTP/1.1 requests need exactly one Host header."),
        (b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400, "The Host header is not a valid host name."),
        (b"GET / HTTP/2.0\r\nHost: h\r\n\r\n", 400, "The request line must end with HTTP/1.1 or HTTP/1.0."),
        (POST + b"Expect: 200-ok\r\n\r\n", 417, "Only 'Expect: 100-continue' is supported."),
    ],
)
def test_framing_refusals(data: bytes, status: int, detail: str) -> None:
    """What llhttp accepts but a strict gateway must not is refused with its own reason."""
    assert refusal(data) == (status, detail)


@pytest.mark.parametrize(
    "data",
    [
        POST + b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",  # CL.TE
        POST + b"Content-Length: 3\r\nContent-Length: 4\r\n\r\n",  # duplicate lengths
        POST + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",  # TE twice
        POST + b"Content-Length: +3\r\n\r\n",
        POST + b"X-Folded: a\r\n b\r\n\r\n",  # obs-fold
        POST + b"X-Ctl: a\x01b\r\n\r\n",  # a control character
        POST + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n",  # a chunk size that is not hex
    ],
)
def test_llhttp_refusals_are_400(data: bytes) -> None:
    """What llhttp itself refuses is a 400 naming llhttp's (fixed) reason."""
    status, detail = refusal(data)
    assert status == 400 and detail.startswith("Malformed HTTP request: ")


def test_limits_refuse_long_targets_and_large_heads() -> None:
    """The target and the head are bounded by ``listen.limits`` as they arrive."""
    limits = Limits(max_url_bytes=256, max_header_bytes=1024, max_headers=8)
    assert refusal(b"GET /" + b"a" * 300 + b" HTTP/1.1\r\n", limits) == (414, "The request target is too long.")
    many = b"".join(b"X-%d: v\r\n" % i for i in range(9))
    assert refusal(b"GET / HTTP/1.1\r\n" + many + b"\r\n", limits) == (431, "The request has too many header fields.")
    big = b"X-Big: " + b"b" * 1100 + b"\r\n"
    assert refusal(b"GET / HTTP/1.1\r\n" + big + b"\r\n", limits) == (431, "The request header fields are too large.")


def test_new_limits_bound_the_next_head() -> None:
    """Limits given between two requests (a reload) bound the next head: a head the old
    limits let through is refused under tighter ones, on the same connection's reader."""
    many = b"".join(b"X-%d: v\r\n" % i for i in range(9))
    head = b"GET / HTTP/1.1\r\nHost: h\r\n" + many + b"\r\n"
    t = Transcript(Limits(max_headers=16))
    assert t.feed(head) == "started head data"
    t.reader.use_limits(Limits(max_headers=8))
    assert t.feed(head).endswith("failed pause")
    assert t.queue[-1].error == (431, "The request has too many header fields.")
    target = b"GET /" + b"a" * 300 + b" HTTP/1.1\r\nHost: h\r\n\r\n"
    t = Transcript(Limits(max_url_bytes=1024))
    assert t.feed(target) == "started head data"
    t.reader.use_limits(Limits(max_url_bytes=256))
    assert t.feed(target).endswith("failed pause")
    assert t.queue[-1].error == (414, "The request target is too long.")


def test_higher_minor_version_is_served_as_1_1() -> None:
    """HTTP/1.2 is an HTTP/1 request served as 1.1 (RFC 9112 2.5), not refused."""
    t = Transcript()
    assert t.feed(b"GET / HTTP/1.2\r\nHost: h\r\n\r\n") == "started head data"
    assert t.queue[0].version == "1.1" and t.queue[0].error is None


def test_error_mid_body_breaks_the_request_and_stops_parsing() -> None:
    """A bad chunk marks the request being received as broken (its handler must not use
    its body), queues the refusal after it, and nothing further is parsed."""
    t = Transcript()
    t.feed(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
    assert t.feed(b"zz\r\n") == "data failed pause"
    first, broken = t.queue
    assert first.error is not None and first.error[0] == 400 and not first.complete
    assert broken.parse_error and broken.error == first.error
    assert t.feed(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n") == ""
    assert len(t.queue) == 2


def test_end_of_input_cuts_a_body_short() -> None:
    """A client that half-closes in the middle of a body: that request gets a 400."""
    t = Transcript()
    t.feed(POST + b"Content-Length: 10\r\n\r\nabc")
    assert named(t.reader.end_of_input()) == "data"
    assert t.queue[0].error == (400, "The request body was cut short.") and t.reader.dead
    assert named(Transcript().reader.end_of_input()) == ""  # between requests: nothing to cut


def test_timeout_failure_queues_a_408() -> None:
    """The owner's header timeout becomes a queued 408 that ends the connection."""
    t = Transcript()
    assert t.feed(b"GET / HTT") == "started"
    events = t.reader.fail(408, "The request head was not received in time.", "http.header_timeout")
    assert named(events) == "failed pause"
    assert t.queue[-1].error == (408, "The request head was not received in time.")
    assert t.queue[-1].reason == "http.header_timeout"


def test_upgrade_stops_parsing_after_its_head() -> None:
    """After an Upgrade head nothing is HTTP any more: it is queued, marked, and reading stops."""
    t = Transcript()
    line = t.feed(b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n\x81\x00")
    assert line == "started head data pause"
    assert t.queue[0].upgrade and t.reader.dead


def test_reading_pauses_on_queued_heads_and_buffered_body() -> None:
    """Back-pressure: more than ``MAX_QUEUED`` heads, or more than ``BODY_BUFFER_HIGH``
    unread body bytes, ask the owner to stop reading."""
    t = Transcript()
    assert t.feed(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n" * MAX_QUEUED) == "started head data"
    assert t.feed(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n") == "started head data pause"
    t = Transcript()
    assert t.feed(POST + b"Content-Length: %d\r\n\r\n" % (BODY_BUFFER_HIGH + 2) + b"x" * BODY_BUFFER_HIGH) == (
        "started head data"
    )
    assert t.feed(b"x") == "data pause"


# -- decisions from a request alone --------------------------------------------------------
def parsed(data: bytes) -> Incoming:
    t = Transcript()
    t.feed(data)
    return t.queue[0]


def test_refused_request_keeps_its_connection_only_when_its_body_can_be_dropped() -> None:
    """A refusal keeps the connection for a complete or small unread body; not for a large
    one, a body the client waits to be asked for (100-continue), a draining server, or
    ``Connection: close``."""
    assert keeps_alive_after_refusal(parsed(POST + b"Content-Length: 3\r\n\r\nabc"), draining=False)
    assert not keeps_alive_after_refusal(parsed(POST + b"Content-Length: 3\r\n\r\nabc"), draining=True)
    small = parsed(POST + b"Content-Length: 65536\r\n\r\n")
    assert body_discardable(small) and keeps_alive_after_refusal(small, draining=False)
    large = parsed(POST + b"Content-Length: 65537\r\n\r\n")
    assert not body_discardable(large)
    waiting = parsed(POST + b"Content-Length: 3\r\nExpect: 100-continue\r\n\r\n")
    assert not body_discardable(waiting)
    closing = parsed(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    assert not keeps_alive_after_refusal(closing, draining=False)


def test_streamed_response_framing() -> None:
    """A streamed body of unknown length is chunked for HTTP/1.1 and ends with the
    connection for HTTP/1.0; HEAD and 204 carry no body at all."""
    get11 = parsed(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    get10 = parsed(b"GET / HTTP/1.0\r\n\r\n")
    head = parsed(b"HEAD / HTTP/1.1\r\nHost: h\r\n\r\n")
    assert streamed_framing(200, get11, has_length=False, keep=True) == (False, True, True)
    assert streamed_framing(200, get11, has_length=True, keep=True) == (False, False, True)
    assert streamed_framing(200, get10, has_length=False, keep=True) == (False, False, False)
    assert streamed_framing(200, head, has_length=False, keep=True) == (True, False, True)
    assert streamed_framing(204, get11, has_length=False, keep=True) == (True, False, True)


def test_refusals_keep_their_status_while_another_exception_is_handled() -> None:
    """httptools hands a callback's refusal back as the parser error's ``__context__``, and a
    raise while another exception is being handled replaces that context (a compiled
    coroutine interrupted by a cancellation once left one set in a worker's thread, and every
    refusal became 'Malformed HTTP request: User callback error.'). The reader keeps the
    refusal itself: 417, 414 and 431 keep their status and reason."""
    try:
        raise RuntimeError("an exception left being handled")
    except RuntimeError:
        assert refusal(POST + b"Expect: 200-ok\r\n\r\n") == (417, "Only 'Expect: 100-continue' is supported.")
        assert refusal(b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: h\r\n\r\n")[0] == 414
        many = b"".join(b"X-%d: 1\r\n" % i for i in range(500))
        assert refusal(b"GET / HTTP/1.1\r\nHost: h\r\n" + many + b"\r\n")[0] == 431
