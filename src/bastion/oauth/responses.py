"""The endpoints' answers: JSON, never cached, with the security headers of Bastion's
own responses. Errors follow RFC 6749 section 5.2: ``{"error", "error_description"}``,
400 in general, 401 (with a ``WWW-Authenticate`` challenge) for a client that failed to
authenticate."""

from __future__ import annotations

import json
from typing import Any

from bastion.types import HeaderList, Response

_SECURITY_HEADERS: HeaderList = [
    ("x-content-type-options", "nosniff"),
    ("content-security-policy", "default-src 'none'; frame-ancestors 'none'"),
    ("referrer-policy", "no-referrer"),
]


def json_response(
    status: int, body: dict[str, Any], *, cache: str = "no-store", extra: HeaderList | None = None
) -> Response:
    headers: HeaderList = [("content-type", "application/json"), ("cache-control", cache)]
    if cache == "no-store":
        headers.append(("pragma", "no-cache"))
    headers += _SECURITY_HEADERS
    if extra:
        headers += extra
    return Response(status, headers, json.dumps(body, separators=(",", ":")).encode("utf-8"))


def oauth_error(status: int, error: str, description: str, extra: HeaderList | None = None) -> Response:
    """An RFC 6749 5.2 error; ``description`` is a fixed sentence (never the client's input)."""
    return json_response(status, {"error": error, "error_description": description}, extra=extra)


#: RFC 6749 5.2: a client that tried to authenticate gets 401 and a challenge.
INVALID_CLIENT_HEADERS: HeaderList = [("www-authenticate", 'Basic realm="oauth", charset="UTF-8"')]


def invalid_client() -> Response:
    """One answer for every failed client authentication (unknown client == wrong secret)."""
    return oauth_error(401, "invalid_client", "Client authentication failed.", INVALID_CLIENT_HEADERS)


def too_many_failures(retry_after: int) -> Response:
    return oauth_error(
        429,
        "temporarily_unavailable",
        "Too many failed client authentications; retry later.",
        [("retry-after", str(retry_after))],
    )
