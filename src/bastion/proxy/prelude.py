"""Before the stages, and the request the upstream receives: no I/O.

:func:`prelude` takes a parsed request to the :class:`Exchange` the stages see (request
ID, the checks that need no stage, normalisation, routing, forwarding headers) or to the
:class:`Refusal` that answers it; :func:`upstream_head` writes the head Bastion sends
upstream with its own framing and forwarding headers.
"""

from __future__ import annotations

import os
from typing import NamedTuple

from bastion.proxy.bounds import Bounds
from bastion.proxy.http import HOP_BY_HOP, strip_hop_by_hop
from bastion.proxy.http1 import HOST_CHARS, Incoming
from bastion.proxy.limits import (
    BODY_TOO_LARGE,
    HEADER_TOO_LARGE,
    QUERY_TOO_LONG,
    TOO_MANY_HEADERS,
    TOO_MANY_IN_FLIGHT,
    TOO_MANY_QUERY_PARAMS,
    URL_TOO_LONG,
)
from bastion.proxy.record import RecordDraft, new_record
from bastion.proxy.runtime import RouteRuntime, Runtime
from bastion.proxy.upstream import TargetState
from bastion.routing import BadTarget, Match, split_absolute, split_target
from bastion.types import Exchange, HeaderList, Request, header_get

#: Incoming headers a gateway owns: dropped from clients, rewritten for the upstream.
FORWARDING_HEADERS = frozenset(
    {
        "forwarded",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-forwarded-port",
        "x-real-ip",
        "x-request-id",
        "expect",
    }
)
_REQUEST_ID_CHARS = HOST_CHARS.replace("[]", "")
#: A refusal for load that passes: the client may retry in a second.
_RETRY_SOON: HeaderList = [("retry-after", "1")]


class Refusal(NamedTuple):
    """A refusal decided before any stage ran (or on the body): what the client gets."""

    status: int
    detail: str
    reason: str
    request_id: str
    extra: HeaderList | None = None
    #: Who refused, for the access log and metrics: the core, or a stage decided at load
    #: whose refusal needs only the head (auth).
    stage: str = "core"
    title: str | None = None


Outcome = Refusal | tuple[RouteRuntime, Exchange]


def prelude(runtime: Runtime, req: Incoming, peer_ip: str, scheme: str) -> tuple[RecordDraft, Outcome]:
    """The request ID, checks that need no route, normalisation, routing, and the Exchange
    the stages will see; or the refusal. Fills the access record as it goes."""
    trusted = runtime.is_trusted(peer_ip)
    request_id = request_id_of(req.headers, trusted)
    record = new_record(req, request_id, peer_ip)
    record_outcome = _prelude(runtime, req, peer_ip, scheme, trusted, request_id, record)
    if trusted and isinstance(record_outcome, Refusal):
        # Refused before the request was built: the record names the client the trusted
        # proxy forwarded for, not the proxy (the detectors count by it).
        record.client = _forwarded_client(runtime, req.headers, peer_ip)
    return record, record_outcome


def _prelude(
    runtime: Runtime, req: Incoming, peer_ip: str, scheme: str, trusted: bool, request_id: str, record: RecordDraft
) -> Outcome:
    if req.error is not None:
        return Refusal(req.error[0], req.error[1], req.reason, request_id)
    if req.upgrade:
        if req.method == "CONNECT":
            return Refusal(501, "CONNECT (tunnelling) is not supported.", "http.connect", request_id)
        return Refusal(501, "Protocol upgrades (WebSocket) are not supported yet.", "http.upgrade", request_id)
    if runtime.exchanges > runtime.bounds.max_in_flight:  # this exchange counted in already
        return Refusal(
            503, "The gateway is at capacity; retry the request.", TOO_MANY_IN_FLIGHT, request_id, _RETRY_SOON
        )
    url = req.url
    host = req.host
    if not url.startswith(b"/") and (url.startswith(b"http://") or url.startswith(b"https://")):
        # Absolute form (RFC 9112 3.2.2): its authority is the host, the Host header is ignored.
        try:
            host, url = split_absolute(url)
        except BadTarget as exc:
            return Refusal(exc.status, exc.detail, "http.target", request_id)
        record.host = host
    try:
        path, query, matrix_path = split_target(url, runtime.bounds.max_url_bytes)
    except BadTarget as exc:
        return Refusal(exc.status, exc.detail, "http.target", request_id)
    record.path = path
    builtin = runtime.builtin
    # The gateway's own endpoints first, on the normalised path, exact paths only.
    match = builtin.match(host, path, req.method) if builtin is not None else None
    if match is None:
        match = runtime.router.match(host, path, req.method, matrix_path)
    if not isinstance(match, Match) and match is not None and req.method == "OPTIONS":
        match = _preflight_match(runtime, req, host, path, matrix_path, match)
    if not isinstance(match, Match):
        if match is None:
            return Refusal(404, "No route matches this path.", "route.not_found", request_id)
        return Refusal(
            405,
            "This method is not allowed on this path.",
            "route.method_not_allowed",
            request_id,
            [("allow", ", ".join(match))],
        )
    if match.path is not None:  # a matrix-style route: forward its ;name=value segments
        path = match.path
        record.path = path
    route = match.route
    record.route = route.id
    record.service = route.service
    over = over_route_limits(route.bounds, req, query)
    if over is not None:
        return Refusal(over[0], over[1], over[2], request_id)
    auth = route.auth_refusal
    if auth is not None:  # decided on the head alone: the client uploads nothing
        return Refusal(
            auth.status, auth.detail, auth.reason, request_id, list(auth.headers), "auth", auth.title
        )
    if route.auth_delegated:
        record.auth = "delegated"
    if (req.chunked or req.content_length) and req.method not in route.body_methods:
        # CL.0 smuggling: a backend that never reads a GET's body would parse it as the
        # next request on its pooled connection. Decided from the head (even an empty
        # chunked body is refused), so nothing of the request is forwarded.
        return Refusal(
            400, f"A {req.method} request on this route cannot have a body.", "http.body_not_allowed", request_id
        )
    length = req.content_length if req.content_length is not None else req.buffered
    if length > route.max_body_bytes:
        return Refusal(413, "The request body is too large for this route.", BODY_TOO_LARGE, request_id)
    request = build_request(runtime, req, path, query, host, trusted, peer_ip, scheme)
    request.path_params = match.params
    record.client = request.client_ip
    return (route, Exchange(request, request_id, route.service, route.id, req.started))


def over_route_limits(limits: Bounds, req: Incoming, query: str) -> tuple[int, str, str] | None:
    """The status, detail and reason of the route's first limit the request's head is over,
    or ``None``. Checked from the head alone: a refused client uploads nothing."""
    if len(req.headers) > limits.max_headers:
        return 431, "The request has too many header fields for this route.", TOO_MANY_HEADERS
    if req.head_bytes > limits.max_header_bytes:
        return 431, "The request header fields are too large for this route.", HEADER_TOO_LARGE
    if len(req.url) > limits.max_url_bytes:
        return 414, "The request target is too long for this route.", URL_TOO_LONG
    if query:
        if len(query) > limits.max_query_bytes:
            return 414, "The query string is too long for this route.", QUERY_TOO_LONG
        # Each '&' starts a parameter: an upper bound on what any parser makes of it, in C.
        if query.count("&") >= limits.max_query_params:
            return 414, "The query string has too many parameters for this route.", TOO_MANY_QUERY_PARAMS
    return None

def _preflight_match(
    runtime: Runtime, req: Incoming, host: str, path: str, matrix_path: str | None, allowed: list[str]
) -> Match[RouteRuntime] | list[str]:
    """A CORS preflight on a path whose routes do not list OPTIONS goes to the route of the
    method it asks for, when that route's chain answers preflights (its ``cors`` stage);
    otherwise it stays the 405 it was."""
    wanted = header_get(req.headers, "access-control-request-method")
    if wanted is None or header_get(req.headers, "origin") is None:
        return allowed
    found = runtime.router.match(host, path, wanted, matrix_path)
    if isinstance(found, Match) and found.route.chain.answers_preflight:
        return found
    return allowed


def build_request(
    runtime: Runtime, req: Incoming, path: str, query: str, host: str, trusted: bool, peer_ip: str, scheme: str
) -> Request:
    """The request as stages see it: hop-by-hop and forwarding headers dropped (the latter
    believed, for the client address and scheme, only from a trusted proxy)."""
    headers: HeaderList = []
    xff: str | None = None
    fproto: str | None = None
    for k, v in strip_hop_by_hop(req.headers) if req.has_connection else req.headers:
        if k in HOP_BY_HOP:
            continue
        if k in FORWARDING_HEADERS:
            if trusted:
                if k == "x-forwarded-for":
                    xff = v if xff is None else f"{xff}, {v}"
                elif k == "x-forwarded-proto" and v in ("http", "https"):
                    fproto = v
            continue
        headers.append((k, v))
    client_ip, chain = _client_of(runtime, xff, peer_ip)
    request = Request(
        req.method,
        req.url.decode("latin-1"),
        path,
        query,
        headers,
        client_ip=client_ip,
        scheme=fproto or scheme,
        host=host,
        http_version=req.version,
    )
    request.forwarded_for = chain
    return request


def _client_of(runtime: Runtime, xff: str | None, peer_ip: str) -> tuple[str, list[str]]:
    """The client's address and the chain of addresses, from a trusted peer's
    X-Forwarded-For: the right-most address not belonging to a trusted proxy."""
    if not xff:
        return peer_ip, [peer_ip]
    hops = [h.strip() for h in xff.split(",") if h.strip()]
    client_ip = peer_ip
    for hop in reversed(hops):
        client_ip = hop
        if not runtime.is_trusted(hop):
            break
    return client_ip, [*hops, peer_ip]


def _forwarded_client(runtime: Runtime, headers: HeaderList, peer_ip: str) -> str:
    """The client a trusted peer forwarded for (its X-Forwarded-For), as :func:`build_request`
    finds it; for a request refused before it was built."""
    xff = ", ".join(v for k, v in headers if k == "x-forwarded-for") or None
    return _client_of(runtime, xff, peer_ip)[0]


def upstream_head(ex: Exchange, target: TargetState, body_len: int | None) -> bytes:
    """The request head Bastion sends upstream: its own framing and forwarding headers
    (``body_len`` ``None``: the body streams, chunked)."""
    request = ex.request
    query = request.query
    client = request.client_ip
    scheme = request.scheme
    host = request.host
    if body_len is None:
        framing = "transfer-encoding: chunked\r\n"
    elif body_len or request.method in ("POST", "PUT", "PATCH"):
        framing = f"content-length: {body_len}\r\n"
    else:
        framing = ""
    forwarded_host = f';host="{host}"\r\nx-forwarded-host: {host}\r\n' if host else "\r\n"
    node = f'"[{client}]"' if ":" in client else client
    pool = target.pool
    if pool.credential_lines:  # the gateway's credentials, never a client's value for them
        names = pool.credential_names
        headers = "".join(
            [f"{k}: {v}\r\n" for k, v in request.headers if k != "host" and k != "content-length" and k not in names]
        )
        headers += pool.credential_lines
    else:
        headers = "".join([f"{k}: {v}\r\n" for k, v in request.headers if k != "host" and k != "content-length"])
    return (
        f"{request.method} {target.base_path}{request.path}{'?' if query else ''}{query} HTTP/1.1\r\n"
        f"{target.host_line}{headers}"
        f"x-forwarded-for: {', '.join(request.forwarded_for)}\r\nx-forwarded-proto: {scheme}\r\n"
        f"forwarded: for={node};proto={scheme}{forwarded_host}"
        f"x-request-id: {ex.request_id}\r\n{framing}\r\n"
    ).encode("latin-1")


#: The last three hex digits of a request ID, looked up: "000" to "fff".
_LOW_DIGITS: tuple[str, ...] = tuple(f"{n:03x}" for n in range(4096))


class _RequestIds:
    """Request IDs: unique, not secret. A random 64-bit prefix per worker process and a
    counter give 32 hex digits with no system call and no random draw per request."""

    def __init__(self) -> None:
        # Workers are started as new interpreters (never forked), so each draws its own.
        self.prefix = os.urandom(8).hex()
        self.count = 0
        self.high = self.prefix + "0" * 13

    def next(self) -> str:
        count = self.count + 1
        self.count = count
        low = count & 0xFFF
        if low == 0:
            # The counter's 16 hex digits: the first 13 change once in 4,096 IDs, the last
            # three are a table lookup (formatting the count each time costs ~2,000
            # instructions, callgrind; a string concatenation a tenth of that).
            self.high = self.prefix + f"{count >> 12:013x}"
        return self.high + _LOW_DIGITS[low]


_ids = _RequestIds()


def next_request_id() -> str:
    """A new request ID."""
    return _ids.next()


def request_id_of(headers: HeaderList, trusted: bool) -> str:
    """The request's ID: a trusted proxy's ``X-Request-ID`` if it is sane, else a new one."""
    if trusted:
        incoming = header_get(headers, "x-request-id")
        if incoming and len(incoming) <= 128 and not incoming.strip(_REQUEST_ID_CHARS):
            return incoming
    return _ids.next()


__all__ = [
    "Refusal",
    "build_request",
    "next_request_id",
    "over_route_limits",
    "prelude",
    "request_id_of",
    "upstream_head",
]
