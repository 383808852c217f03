"""Small HTTP/1.1 helpers shared by the server and upstream sides."""

from __future__ import annotations

from http import HTTPStatus

from bastion.types import HeaderList

#: Hop-by-hop headers (RFC 9110 section 7.6.1), never forwarded in either direction.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "proxy-authenticate",
        "proxy-authorization",
    }
)

_REASONS = {s.value: s.phrase for s in HTTPStatus}
_STATUS_LINES: dict[int, bytes] = {}

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})


def status_line(status: int) -> bytes:
    """``HTTP/1.1 200 OK\\r\\n``, cached."""
    line = _STATUS_LINES.get(status)
    if line is None:
        line = f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}\r\n".encode("ascii")
        if len(_STATUS_LINES) < 1000:
            _STATUS_LINES[status] = line
    return line


def strip_hop_by_hop(headers: HeaderList) -> HeaderList:
    """``headers`` without hop-by-hop fields, including those named in ``Connection``."""
    named: set[str] = set()
    for k, v in headers:
        if k == "connection":
            named.update(t.strip().lower() for t in v.split(","))
    if not named:
        return [(k, v) for k, v in headers if k not in HOP_BY_HOP]
    return [(k, v) for k, v in headers if k not in HOP_BY_HOP and k not in named]


def serialize_headers(headers: HeaderList) -> bytes:
    """Header lines and the blank line that ends the head (latin-1, as on the wire)."""
    return "".join([f"{k}: {v}\r\n" for k, v in headers]).encode("latin-1") + b"\r\n"


def body_forbidden(status: int, method: str) -> bool:
    """Responses that never carry a body (RFC 9110 section 6.4.1)."""
    return method == "HEAD" or status in (204, 304) or 100 <= status < 200
