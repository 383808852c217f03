"""The objects every part of the data plane shares.

A request arrives, becomes an :class:`Exchange`, passes through the stages of its route's
chain, and (unless a stage answers it) is forwarded upstream; the upstream's :class:`Response`
then passes back through the same stages in reverse. These classes carry no I/O.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

#: Header lists keep wire order and duplicates. Names are lower-case, values latin-1 text.
HeaderList = list[tuple[str, str]]
_NOTHING: frozenset[str] = frozenset()


def header_get(headers: HeaderList, name: str) -> str | None:
    """First value of ``name`` (lower-case) in ``headers``, or ``None``."""
    for key, value in headers:
        if key == name:
            return value
    return None


class Request:
    """A parsed, normalised client request, as stages see it.

    ``path`` is the normalised path Bastion routed on and forwards upstream; ``raw_target``
    is what the client sent. ``body`` is filled only when the route's chain asked for the
    body (it is then complete and no larger than the route's cap).
    """

    __slots__ = (
        "body",
        "client_ip",
        "forwarded_for",
        "headers",
        "host",
        "http_version",
        "inert_headers",
        "inert_path",
        "method",
        "parsed_json",
        "path",
        "path_params",
        "query",
        "raw_target",
        "scheme",
    )

    def __init__(
        self,
        method: str,
        raw_target: str,
        path: str,
        query: str,
        headers: HeaderList,
        *,
        client_ip: str = "127.0.0.1",
        scheme: str = "http",
        host: str = "",
        http_version: str = "1.1",
    ) -> None:
        self.method = method
        self.raw_target = raw_target
        self.path = path
        self.query = query
        self.headers = headers
        self.client_ip = client_ip
        self.scheme = scheme
        self.host = host
        self.http_version = http_version
        self.path_params: dict[str, str] = {}
        self.body: bytes | None = None
        #: The body's JSON value once a stage has parsed it (validation does), wrapped in a
        #: 1-tuple since the value itself may be null; later stages reuse it. ``None`` before.
        self.parsed_json: tuple[Any] | None = None
        #: Inputs validation has proven inert (a UUID, a date, a number: nothing a backend
        #: could interpret as code), which detection need not inspect: header names, and
        #: whether the whole path is the route's template with such parameters.
        self.inert_headers: frozenset[str] = _NOTHING
        self.inert_path = False
        #: The X-Forwarded-For chain sent upstream (trusted hops, then the peer).
        self.forwarded_for: list[str] = [client_ip]

    def header(self, name: str) -> str | None:
        """First value of the header ``name`` (case-insensitive)."""
        return header_get(self.headers, name.lower())


class Response:
    """A response on its way to the client.

    ``body`` is ``None`` while the body is still streaming from the upstream; it is bytes
    when a stage produced the response or when the chain asked for the response body.
    """

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: HeaderList | None = None, body: bytes | None = b"") -> None:
        self.status = status
        self.headers: HeaderList = headers if headers is not None else []
        self.body = body

    def header(self, name: str) -> str | None:
        """First value of the header ``name`` (case-insensitive)."""
        return header_get(self.headers, name.lower())


@dataclass(slots=True, frozen=True)
class Block:
    """A stage's decision to refuse a request (or a response).

    ``reason`` is a stable machine-readable code (``"headers.forbidden"``) written to the
    access log; ``title`` and ``detail`` go to the client in the problem document, so they
    must never contain internals or echo raw input.
    """

    status: int
    title: str
    detail: str
    reason: str
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(slots=True)
class Decision:
    """What a stage decided about an exchange, as recorded in the access log."""

    stage: str
    action: str  # "block" (enforced), "monitor" (shadow mode), "error" (stage failed)
    reason: str
    status: int = 0


class Exchange:
    """One request/response pair travelling through the pipeline."""

    __slots__ = (
        "blocked_by",
        "context",
        "decisions",
        "request",
        "request_id",
        "response",
        "route_id",
        "service",
        "started",
    )

    def __init__(
        self, request: Request, request_id: str, service: str = "", route_id: str = "", started: float | None = None
    ) -> None:
        self.request = request
        self.request_id = request_id
        self.service = service
        self.route_id = route_id
        self.response: Response | None = None
        #: Facts stages leave for later stages (e.g. the authenticated consumer).
        self.context: dict[str, Any] = {}
        self.decisions: list[Decision] = []
        self.started = time.perf_counter() if started is None else started
        #: The stage that decided the outcome, when one did (for the access log).
        self.blocked_by = ""
