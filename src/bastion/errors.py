"""Errors Bastion answers with: RFC 9457 problem documents, never internals."""

from __future__ import annotations

import orjson

from bastion.types import Block, HeaderList, Response

PROBLEM_CONTENT_TYPE = "application/problem+json"

#: Titles for the statuses the core itself produces.
_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    413: "Content Too Large",
    414: "URI Too Long",
    417: "Expectation Failed",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def problem_body(
    status: int, detail: str, request_id: str, *, title: str | None = None, type_: str = "about:blank"
) -> bytes:
    """The JSON of a problem document. ``detail`` must not contain client input."""
    return orjson.dumps(
        {
            "type": type_,
            "title": title or _TITLES.get(status, "Error"),
            "status": status,
            "detail": detail,
            "request_id": request_id,
        }
    )


def problem_response(
    status: int, detail: str, request_id: str, *, title: str | None = None, headers: HeaderList | None = None
) -> Response:
    """A complete problem+json response."""
    body = problem_body(status, detail, request_id, title=title)
    # Bastion's own answers carry the security headers even where no route (and so no
    # headers stage) applies: a problem document never needs scripts, frames or a referrer.
    out: HeaderList = [
        ("content-type", PROBLEM_CONTENT_TYPE),
        ("cache-control", "no-store"),
        ("x-content-type-options", "nosniff"),
        ("content-security-policy", "default-src 'none'; frame-ancestors 'none'"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
    ]
    if headers:
        out.extend(headers)
    return Response(status, out, body)


def block_response(block: Block, request_id: str) -> Response:
    """The problem response a stage's :class:`Block` turns into."""
    return problem_response(block.status, block.detail, request_id, title=block.title, headers=list(block.headers))


class BastionError(Exception):
    """Base class of Bastion's own exceptions."""


class DependencyUnavailable(BastionError):
    """A stage could not reach something it needs (a key store, Redis, a JWKS endpoint).

    The runner turns it into 503 when the stage fails closed.
    """


class DeadlineExceeded(DependencyUnavailable):
    """A stage's hook waited longer than the stage's ``timeout`` (its dependency is too slow
    to count on); treated as an unavailable dependency."""


class PolicyError(BastionError):
    """A stage cannot be built on a route from its settings and what it compiles there (an
    unresolvable ``$ref``, a pattern that needs backtracking). The message says what; the
    loader reports it as a configuration error with the route's origin. Stages raise this
    rather than the loader's own ``ConfigError``, which they cannot import: the loader
    imports the stage registry."""
