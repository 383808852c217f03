"""Strict request parsing: smuggling vectors and malformed heads, each over a raw socket.

Every case must be answered with a problem+json error, the connection must be closed
(whatever follows the broken request cannot be framed safely), and not one byte of it may
reach the upstream.
"""

from __future__ import annotations

import pytest

from bastion.testing import GatewayProcess

from .scripted import ScriptedUpstream
from .util import assert_problem, send_closing

#: (id, bytes with {t} where the token goes, expected status)
CASES: list[tuple[str, str | bytes, int]] = [
    ("cl-and-te", "POST /echo?{t} HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
                  "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("te-and-cl", "POST /echo?{t} HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                  "Content-Length: 5\r\n\r\n0\r\n\r\n", 400),
    ("duplicate-cl-same", "POST /echo?{t} HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
                          "Content-Length: 5\r\n\r\nhello", 400),
    ("duplicate-cl-different", "POST /echo?{t} HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
                               "Content-Length: 6\r\n\r\nhello!", 400),
    ("cl-list", "POST /echo?{t} HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\nhello", 400),
    ("cl-non-numeric", "POST /echo?{t} HTTP/1.1\r\nHost: a\r\nContent-Length: abc\r\n\r\nhello", 400),
    ("cl-plus-sign", "POST /echo?{t} HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello", 400),
    ("cl-negative", "POST /echo?{t} HTTP/1.1\r\nHost: a\r\nContent-Length: -5\r\n\r\nhello", 400),
    ("cl-hex", "POST /echo?{t} HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\nhello", 400),
    ("cl-overflow", "POST /echo?{t} HTTP/1.1\r\nHost: a\r\n"
                    "Content-Length: 99999999999999999999999\r\n\r\nhello", 400),
    ("te-identity-chunked", "POST /echo?{t} HTTP/1.1\r\nHost: a\r\n"
                            "Transfer-Encoding: identity, chunked\r\n\r\n0\r\n\r\n", 400),
    ("te-chunked-identity", "POST /echo?{t} HTTP/1.1\r\nHost: a\r\n"
                            "Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n", 400),
    ("te-xchunked", "POST /echo?{t} HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n"
                    "0\r\n\r\n", 400),
    ("te-gzip-chunked", "POST /echo?{t} HTTP/1.1\r\nHost: a\r\n"
                        "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 400),
    ("te-twice", "POST /echo?{t} HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                 "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("obs-fold", "GET /echo?{t} HTTP/1.1\r\nHost: a\r\nX-Folded: first\r\n second\r\n\r\n", 400),
    ("nul-in-header-value", "GET /echo?{t} HTTP/1.1\r\nHost: a\r\nX-Nul: a\x00b\r\n\r\n", 400),
    ("bare-cr-in-header-value", "GET /echo?{t} HTTP/1.1\r\nHost: a\r\nX-Cr: a\rb\r\n\r\n", 400),
    ("bare-lf-in-header-value", "GET /echo?{t} HTTP/1.1\r\nHost: a\r\nX-Lf: a\nb\r\n\r\n", 400),
    ("space-before-colon", "GET /echo?{t} HTTP/1.1\r\nHost: a\r\nX-Space : a\r\n\r\n", 400),
    ("non-ascii-in-path", b"GET /echo\xff?{t} HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("non-ascii-in-query", b"GET /echo?{t}\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("invalid-chunk-size", "POST /echo?{t} HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                           "\r\nzz\r\nhello\r\n0\r\n\r\n", 400),
    ("negative-chunk-size", "POST /echo?{t} HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                            "\r\n-5\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk-size-overflow", "POST /echo?{t} HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                            "\r\nffffffffffffffffffff\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk-without-crlf", "POST /echo?{t} HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                           "\r\n5\r\nhelloXX0\r\n\r\n", 400),
    ("missing-host", "GET /echo?{t} HTTP/1.1\r\nX-Other: a\r\n\r\n", 400),
    ("two-hosts", "GET /echo?{t} HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    ("invalid-host", "GET /echo?{t} HTTP/1.1\r\nHost: a/b@c\r\n\r\n", 400),
    ("bare-lf-line-endings", "GET /echo?{t} HTTP/1.1\nHost: a\n\n", 400),
    # HTTP/1.2 is served as 1.1 (RFC 9112 2.5, see test_http11); other majors are refused.
    ("unknown-http-major-version", "GET /echo?{t} HTTP/3.0\r\nHost: a\r\n\r\n", 400),
    ("http2-version-in-http1-framing", "GET /echo?{t} HTTP/2.0\r\nHost: a\r\n\r\n", 400),
    ("header-too-large", "GET /echo?{t} HTTP/1.1\r\nHost: a\r\nX-Big: " + "a" * 40000 + "\r\n\r\n",
     431),
    ("too-many-headers", "GET /echo?{t} HTTP/1.1\r\nHost: a\r\n"
                         + "".join(f"X-H{i}: a\r\n" for i in range(120)) + "\r\n", 431),
    ("target-too-long", "GET /echo?{t}&" + "a" * 9000 + " HTTP/1.1\r\nHost: a\r\n\r\n", 414),
]


def _render(raw: str | bytes, token: str) -> bytes:
    data = raw.encode("latin-1") if isinstance(raw, str) else raw
    return data.replace(b"{t}", token.encode())


@pytest.mark.parametrize(("raw", "status"), [(raw, status) for _, raw, status in CASES],
                         ids=[case_id for case_id, _, _ in CASES])
def test_malformed_request_is_refused_and_never_forwarded(
    gateway: GatewayProcess, upstream: ScriptedUpstream, token: str, raw: str | bytes, status: int
) -> None:
    """A malformed or ambiguous request gets exactly one problem+json answer with the
    expected status, the connection is closed after it, and the upstream never sees it."""
    responses = send_closing(gateway, _render(raw, token))
    assert len(responses) == 1, responses
    assert_problem(responses[0], status, closes=True)
    assert not upstream.saw(token)


def test_transfer_encoding_on_http10_is_refused(
    gateway: GatewayProcess, upstream: ScriptedUpstream, token: str
) -> None:
    """An HTTP/1.0 request with Transfer-Encoding has faulty framing (RFC 9112 section 6.1):
    a front end that accepts it while a back end reads it as length-less is a smuggling
    vector, so it is refused with 400 and never forwarded."""
    data = _render("POST /echo?{t} HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                   "5\r\nhello\r\n0\r\n\r\n", token)
    responses = send_closing(gateway, data)
    assert len(responses) == 1
    assert_problem(responses[0], 400, closes=True)
    assert not upstream.saw(token)


def test_http09_request_line_is_refused(
    gateway: GatewayProcess, upstream: ScriptedUpstream, token: str
) -> None:
    """A request line without an HTTP version (HTTP/0.9) is not HTTP/1.x: it is refused
    with 400 and never forwarded (it would also bypass the Host check)."""
    responses = send_closing(gateway, _render("GET /echo?{t}\r\n\r\n", token))
    assert len(responses) == 1
    assert_problem(responses[0], 400, closes=True)
    assert not upstream.saw(token)


def test_smuggled_request_in_body_never_reaches_upstream(
    gateway: GatewayProcess, upstream: ScriptedUpstream, token: str
) -> None:
    """The classic CL.TE attack: a body that a TE-reading back end would see as a second
    request. Bastion refuses the whole message; neither request reaches the upstream."""
    smuggled = f"GET /admin?{token}-inner HTTP/1.1\r\nHost: a\r\n\r\n"
    body = f"0\r\n\r\n{smuggled}"
    data = (f"POST /echo?{token} HTTP/1.1\r\nHost: a\r\nContent-Length: {len(body)}\r\n"
            f"Transfer-Encoding: chunked\r\n\r\n{body}").encode()
    responses = send_closing(gateway, data)
    assert [r.status for r in responses] == [400]
    assert not upstream.saw(token)


def test_malformed_second_request_does_not_disturb_the_first(
    gateway: GatewayProcess, upstream: ScriptedUpstream, token: str
) -> None:
    """Pipelined: a valid request followed by a malformed one. The first is answered
    normally (and forwarded), the second gets 400 and closes; only the first reaches
    the upstream."""
    data = (f"GET /echo?{token}-ok HTTP/1.1\r\nHost: a\r\n\r\n"
            f"POST /echo?{token}-bad HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n"
            f"Content-Length: 2\r\n\r\nab").encode()
    responses = send_closing(gateway, data)
    assert [r.status for r in responses] == [200, 400]
    assert responses[0].json()["target"] == f"/echo?{token}-ok"
    assert_problem(responses[1], 400, closes=True)
    assert [r.target for r in upstream.records(token)] == [f"/echo?{token}-ok"]
    assert not upstream.saw(f"{token}-bad")


def test_refused_malformed_request_is_logged(
    gateway: GatewayProcess, token: str
) -> None:
    """A request refused by the parser still gets an access log record: status 400,
    blocked by the core with reason ``http.malformed``, and the request ID it was
    answered with."""
    data = _render("POST /echo?{t} HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n"
                   "Content-Length: 2\r\n\r\nab", token)
    (resp,) = send_closing(gateway, data)
    doc = assert_problem(resp, 400, closes=True)
    record = gateway.wait_for_access_record(lambda r: r["request_id"] == doc["request_id"])
    assert record["status"] == 400
    assert record["blocked_by"] == "core"
    assert record["reason"] == "http.malformed"
    assert record["client"] == "127.0.0.1"
    assert record["bytes_out"] == len(resp.body)
    assert isinstance(record["latency_ms"], float | int)
