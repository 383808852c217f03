"""Small helpers shared by the proxy test modules."""

from __future__ import annotations

import re

from bastion.testing import GatewayProcess, RawConnection, RawResponse, parse_responses, raw_request

PROBLEM = "application/problem+json"
_REQUEST_ID = re.compile(r"^[0-9a-f]{32}$")


def build(method: str, target: str, headers: list[tuple[str, str]] | None = None,
          body: bytes = b"", *, host: str | None = "gw.test", version: str = "HTTP/1.1",
          length: bool = True) -> bytes:
    """A request's bytes: Host first (unless ``None``), then ``headers``, then the body.

    A Content-Length is added for a non-empty body unless ``length`` is false or
    ``headers`` frames the body already.
    """
    lines = [f"{method} {target} {version}"]
    if host is not None:
        lines.append(f"Host: {host}")
    names = {k.lower() for k, _ in headers or []}
    lines += [f"{k}: {v}" for k, v in headers or []]
    if body and length and not names & {"content-length", "transfer-encoding"}:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def send_closing(gw: GatewayProcess, data: bytes, methods: list[str] | None = None,
                 timeout: float = 5.0) -> list[RawResponse]:
    """Send raw bytes, read until the gateway closes, and parse every response."""
    return parse_responses(raw_request("127.0.0.1", gw.port, data, timeout=timeout), methods)


def one(gw: GatewayProcess, method: str, target: str, headers: list[tuple[str, str]] | None = None,
        body: bytes = b"", timeout: float = 5.0) -> RawResponse:
    """One request with ``Connection: close``; its only response."""
    data = build(method, target, [*(headers or []), ("Connection", "close")], body)
    responses = send_closing(gw, data, [method], timeout)
    assert len(responses) == 1, responses
    return responses[0]


def assert_problem(resp: RawResponse, status: int, *, closes: bool | None = None) -> dict[str, object]:
    """``resp`` is an RFC 9457 problem with ``status``, a request ID and nothing internal."""
    assert resp.status == status, (resp.status, resp.body)
    assert resp.header("content-type") == PROBLEM
    doc = resp.json()
    assert isinstance(doc, dict)
    assert doc["status"] == status
    assert set(doc) == {"type", "title", "status", "detail", "request_id"}, doc
    assert _REQUEST_ID.match(str(doc["request_id"])), doc
    assert resp.header("x-request-id") == doc["request_id"]
    text = resp.body.decode("latin-1")
    for leak in ("Traceback", "File \"", "httptools", "Error(", ".py"):
        assert leak not in text, text
    assert resp.header("content-length") == str(len(resp.body))
    if closes is not None:
        assert (resp.header("connection") == "close") == closes
    return doc


def keepalive(gw: GatewayProcess, timeout: float = 5.0) -> RawConnection:
    """A connection to the gateway, to send several requests on."""
    return RawConnection("127.0.0.1", gw.port, timeout=timeout)
