"""Building requests for the detection tests."""

from __future__ import annotations

from bastion.types import Request


def make_request(
    target: str = "/",
    *,
    method: str = "GET",
    headers: list[tuple[str, str]] | None = None,
    body: bytes | str | None = None,
    content_type: str | None = None,
) -> Request:
    """A request as the proxy would hand it to the stages."""
    path, _, query = target.partition("?")
    hdrs = [("host", "api.example.com"), ("user-agent", "test-client/1.0")]
    hdrs.extend((k.lower(), v) for k, v in headers or [])
    if content_type:
        hdrs.append(("content-type", content_type))
    request = Request(method, target, path, query, hdrs)
    if body is not None:
        request.body = body.encode() if isinstance(body, str) else body
    return request
